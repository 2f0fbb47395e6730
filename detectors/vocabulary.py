"""The words of dnsguard's policy contract, defined once: what a rule or a
verdict does (``Action``), how it matches names (``Match``), and the global
scope. The feed's text format, the filter (``filter/crates/dnspolicy``), the
policy file and Redis all use these spellings; ``StrEnum`` members compare
equal to their text, so stored and parsed strings need no conversion.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    NXDOMAIN = "nxdomain"  # answered NXDOMAIN by the filter
    REFUSED = "refused"  # answered REFUSED
    SINKHOLE = "sinkhole"  # answered with the sinkhole address
    SHADOW = "shadow"  # passed, and marked in its event (observe only)
    ALLOW = "allow"  # an operator exception: nothing below it blocks
    LOG = "log"  # an operator rule that only marks


class Match(StrEnum):
    EXACT = "exact"  # the name itself
    SUFFIX = "suffix"  # the name and every name under it


BLOCKING: frozenset[str] = frozenset({Action.NXDOMAIN, Action.REFUSED, Action.SINKHOLE})
# what a detector verdict may do, and what an operator rule may do
VERDICT_ACTIONS: frozenset[str] = BLOCKING | {Action.SHADOW}
RULE_ACTIONS: frozenset[str] = BLOCKING | {Action.ALLOW, Action.LOG}
MATCHES: frozenset[str] = frozenset(Match)

GLOBAL_SCOPE = "*"  # every namespace
GLOBAL_ALIAS = "global"  # how a policy file may spell it


def canonical_scope(scope: str) -> str:
    """``*`` for the global scope however it is spelled; other scopes as given."""
    return GLOBAL_SCOPE if scope == GLOBAL_ALIAS else scope
