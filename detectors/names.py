"""Domain-name normalisation and Public Suffix List splitting.

``split_name("a.b.example.co.uk")`` gives the registrable label
(``example``), the public suffix (``co.uk``) and the labels left of the
registrable domain (``a.b``). The PSL rules (ICANN and private sections, so
dynamic-DNS parents such as ``ddns.net`` count as suffixes) come from the
snapshot shipped inside the ``tldextract`` package, plus ``EXTRA_SUFFIXES``;
nothing is downloaded.

The list's sections matter beyond splitting:

* the **ICANN section** says which top-level domains exist (are delegated in
  the root): a name under any other TLD (``.local``, ``.internal``, ``.corp``,
  a cluster's ``svc`` zone) can never resolve on the Internet;
* the **private section** lists suffixes under which a provider hands out
  names: hosting namespaces (storage buckets, CDN distributions, PaaS apps,
  where the label is an account or resource id that the provider or its
  customer picks, often random by design) and dynamic-DNS parents (where
  anyone can claim a label for free, as DGA operators do). A private
  suffix belongs to a **dynamic-DNS provider** when the PSL organisation block
  that lists it names one (:data:`DYNAMIC_DNS_MARKERS` in the block's comment
  or in any of its suffixes, for example DuckDNS, DynDNS, No-IP, Dynu, dynv6,
  ClouDNS), or it is one of ``EXTRA_SUFFIXES``; every other private suffix is
  a **hosting** suffix.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True, slots=True)
class SplitName:
    name: str
    subdomain: str
    label: str
    suffix: str
    # ``label.suffix`` (or the suffix alone) and the number of subdomain labels:
    # fields, not properties, because detectors read them for every event and
    # splits are cached
    registrable: str = field(init=False)
    subdomain_labels: int = field(init=False)

    def __post_init__(self) -> None:
        registrable = f"{self.label}.{self.suffix}" if self.label else self.suffix
        object.__setattr__(self, "registrable", registrable)
        depth = self.subdomain.count(".") + 1 if self.subdomain else 0
        object.__setattr__(self, "subdomain_labels", depth)


def normalise(name: str) -> str:
    """Lower-case, strip surrounding whitespace and the trailing root dot."""
    return name.strip().rstrip(".").lower()


# the ASCII characters that str.strip() removes, but for the newline
_ASCII_SPACES = tuple(c for c in map(chr, range(128)) if c.isspace() and c != "\n")


def normalise_many(names: Sequence[str]) -> list[str]:
    """``[normalise(name) for name in names]``; an ASCII batch with no whitespace
    and no trailing dot (the usual case) is lower-cased in one call."""
    joined = "\n".join(names)
    if (
        joined.isascii()
        and joined.count("\n") == len(names) - 1
        and not any(space in joined for space in _ASCII_SPACES)
        and ".\n" not in joined
        and not joined.endswith(".")
    ):
        return joined.lower().split("\n")
    return [normalise(name) for name in names]


_RULE, _WILDCARD, _EXCEPTION, _NODE = 1, 2, 4, 8
_WILDCARD_OR_EXCEPTION = _WILDCARD | _EXCEPTION


class PublicSuffixList:
    """Longest-match PSL lookup with wildcard and exception rules.

    Rules live in one dict from suffix to a bit set (rule, wildcard parent,
    exception, or merely a tail of some longer rule). A lookup walks labels
    from the right and stops as soon as no rule can extend the candidate, so
    ``www.example.com`` costs two dict probes.
    """

    __slots__ = ("_table", "dynamic_dns", "hosting", "tlds")

    def __init__(
        self,
        rules: set[str],
        wildcards: set[str],
        exceptions: set[str],
        tlds: Iterable[str] = (),
        hosting: Iterable[str] = (),
        dynamic_dns: Iterable[str] = (),
    ) -> None:
        # top-level domains of the ICANN section (empty: every TLD counts as delegated)
        self.tlds = frozenset(tlds)
        # private-section rules (wildcards as their parent), by kind
        self.hosting = frozenset(hosting)
        self.dynamic_dns = frozenset(dynamic_dns)
        table: dict[str, int] = {}
        for flag, group in ((_RULE, rules), (_WILDCARD, wildcards), (_EXCEPTION, exceptions)):
            for rule in group:
                table[rule] = table.get(rule, 0) | flag | _NODE
                labels = rule.split(".")
                for i in range(1, len(labels)):
                    tail = ".".join(labels[i:])
                    table[tail] = table.get(tail, 0) | _NODE
        self._table = table

    @classmethod
    def from_text(cls, text: str, extra_dynamic_dns: Iterable[str] = ()) -> PublicSuffixList:
        """Rules from the PSL's text. Its ``===BEGIN ICANN DOMAINS===`` and
        ``===BEGIN PRIVATE DOMAINS===`` markers give the sections; in the
        private section a blank line ends one organisation's block."""
        rules: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        tlds: set[str] = set()
        section = ""
        block_text: list[str] = []
        block_rules: list[str] = []
        hosting: set[str] = set()
        dynamic: set[str] = set(extra_dynamic_dns)

        def close_block() -> None:
            if block_rules:
                is_dynamic = DYNAMIC_DNS_MARKERS.search(" ".join(block_text + block_rules))
                (dynamic if is_dynamic else hosting).update(block_rules)
            block_text.clear()
            block_rules.clear()

        for raw in text.splitlines():
            line = raw.strip()
            if "===BEGIN ICANN DOMAINS===" in line:
                section = "icann"
            elif "===BEGIN PRIVATE DOMAINS===" in line:
                section = "private"
            elif "===END" in line:
                close_block()
                section = ""
            if not line:
                close_block()
                continue
            if line.startswith("//"):
                if section == "private":
                    block_text.append(line[2:].lower())
                continue
            rule = line.split()[0].lower()
            rule = rule.encode("idna").decode("ascii") if not rule.isascii() else rule
            if rule.startswith("!"):
                exceptions.add(rule[1:])
            elif rule.startswith("*."):
                wildcards.add(rule[2:])
            else:
                rules.add(rule)
            base = rule.lstrip("!").removeprefix("*.")
            if section == "icann":
                tlds.add(base.rsplit(".", 1)[-1])
            elif section == "private" and not rule.startswith("!"):
                block_rules.append(base)
        close_block()
        for extra in extra_dynamic_dns:
            rules.add(extra)
        return cls(rules, wildcards, exceptions, tlds, hosting - dynamic, dynamic)

    def __len__(self) -> int:
        return sum(1 for flags in self._table.values() if flags & (_RULE | _WILDCARD | _EXCEPTION))

    def suffix_start(self, labels: list[str]) -> int:
        """Index of the first label of the public suffix of ``labels``."""
        table = self._table
        n = len(labels)
        start = n - 1  # the implicit "*" rule: an unknown TLD is a suffix
        candidate = labels[-1]
        i = n - 1
        while True:
            flags = table.get(candidate, 0)
            if not flags:
                return start
            if flags & _EXCEPTION:
                return i + 1
            if flags & _RULE:
                start = i
            if flags & _WILDCARD and i >= 1:
                # "*.candidate" matches one more label, unless an exception says no
                if table.get(labels[i - 1] + "." + candidate, 0) & _EXCEPTION:
                    return i
                start = i - 1
            if i == 0:
                return start
            i -= 1
            candidate = labels[i] + "." + candidate

    def _labels(self, name: str) -> tuple[str, list[str], int]:
        norm = normalise(name)
        labels = norm.split(".") if norm else [""]
        return norm, labels, self.suffix_start(labels)

    def labels_many(self, names: Sequence[str]) -> list[str]:
        """The registrable label of each name (``split(name).label``): what the
        DGA model reads, for a batch, with the common ``label.tld`` case in one
        string split and two dict probes."""
        table = self._table
        out: list[str] = []
        add = out.append
        for norm in normalise_many(names):
            label, _, tld = norm.rpartition(".")
            if (
                label
                and "." not in label
                and not table.get(tld, 0) & _WILDCARD_OR_EXCEPTION
                and norm not in table
            ):
                add(label)
                continue
            labels = norm.split(".") if norm else [""]
            start = self.suffix_start(labels)
            add(labels[start - 1] if start > 0 else "")
        return out

    def label_and_suffix_many(self, names: Sequence[str]) -> tuple[list[str], list[str], list[int]]:
        """``(label, suffix, subdomain_labels)`` of ``split(name)`` for each name, as
        three lists, without building ``SplitName``s (the DGA features split every
        name they score)."""
        suffix_start = self.suffix_start
        table = self._table
        labels_out: list[str] = []
        suffixes: list[str] = []
        depths: list[int] = []
        add_label, add_suffix, add_depth = labels_out.append, suffixes.append, depths.append
        for norm in normalise_many(names):
            # Most names scored are two labels, "label.tld": when the TLD is not
            # a wildcard or exception rule and the whole name is no rule at all,
            # the walk below would end with the TLD as the suffix.
            label, _, tld = norm.rpartition(".")
            if (
                label
                and "." not in label
                and not table.get(tld, 0) & _WILDCARD_OR_EXCEPTION
                and norm not in table
            ):
                add_label(label)
                add_suffix(tld)
                add_depth(0)
                continue
            labels = norm.split(".") if norm else [""]
            start = suffix_start(labels)
            if start <= 0:
                add_label("")
                add_suffix(norm)
                add_depth(0)
                continue
            add_label(labels[start - 1])
            add_suffix(labels[start] if start == len(labels) - 1 else ".".join(labels[start:]))
            # labels[:start - 1] are the subdomain's; joined they are empty only as "" alone
            add_depth(start - 1 if start > 2 or labels[0] else 0)
        return labels_out, suffixes, depths

    def delegated(self, name: str) -> bool:
        """Whether the name's top-level domain exists in the root zone (the
        ICANN section lists it); ``True`` for every TLD when no sections are known."""
        if not self.tlds:
            return True
        return name.rpartition(".")[2] in self.tlds

    def is_public_suffix(self, name: str) -> bool:
        """Whether ``name`` is itself a public suffix (nobody's registrable domain)."""
        return bool(name) and self.split(name).label == ""

    def suffix_kind(self, suffix: str) -> str:
        """``hosting``, ``dynamic-dns`` (private section) or ``icann`` for a
        public suffix as :meth:`split` returns it (a wildcard's match counts as
        its parent's)."""
        for rule in (suffix, suffix.partition(".")[2]):
            if rule in self.dynamic_dns:
                return "dynamic-dns"
            if rule in self.hosting:
                return "hosting"
        return "icann"

    def split(self, name: str) -> SplitName:
        norm, labels, start = self._labels(name)
        if start <= 0:
            return SplitName(norm, "", "", norm)
        return SplitName(
            norm, ".".join(labels[: start - 1]), labels[start - 1], ".".join(labels[start:])
        )


# Dynamic-DNS parents that the bundled snapshot lacks. Their subdomains belong to
# unrelated customers, as under ddns.net or dyndns.org (which the PSL lists), so
# the customer's label is the registrable one: that is the label a DGA varies,
# and a popular parent must not lend its rank to every customer. mooo.com is
# FreeDNS's most used shared domain; yi.org and dynserv.com are the dynamic-DNS
# providers (beside dyndns.org) under which the Kraken botnet's DGA made names.
EXTRA_SUFFIXES = ("mooo.com", "yi.org", "dynserv.com")

# A private-section organisation block that matches this (in its comment or
# any of its suffixes) is a dynamic-DNS provider: its customers pick labels
# freely, so labels under it are scored like registrable domains.
DYNAMIC_DNS_MARKERS = re.compile(
    r"dyn|ddns|duckdns|no-?ip|cloudns|freedns|afraid|dnsalias|dnsdojo|dnshome|dnsup|"
    r"selfip|homeip|gotdns|getmyip|freemyip|myip|hopto|zapto|sytes|serveftp|mydns|now-dns|"
    r"twodns|spdns|changeip|nsupdate|dns-?update|goip",
    re.ASCII,
)


@functools.cache
def default_psl() -> PublicSuffixList:
    """The PSL snapshot bundled with tldextract, plus ``EXTRA_SUFFIXES`` as
    dynamic-DNS parents (read once, on first use)."""
    text = resources.files("tldextract").joinpath(".tld_set_snapshot").read_text("utf-8")
    return PublicSuffixList.from_text(text, extra_dynamic_dns=EXTRA_SUFFIXES)


@functools.lru_cache(maxsize=65_536)
def split_name(name: str) -> SplitName:
    """Split with the bundled PSL. Several detectors split the same event's name,
    so results are cached (bounded; ``SplitName`` is immutable)."""
    return default_psl().split(name)
