"""Which names are cluster noise, before any detector sees them.

A healthy Kubernetes pod sends a lot of DNS that says nothing about
infection:

* **search-path expansions**: with ``ndots:5`` a resolver library tries every
  external name under each search suffix first (``<ns>.svc.<cluster
  domain>``, ``svc.<cluster domain>``, ``<cluster domain>``, then the node's
  extra search domains), for A and AAAA, and each of those answers
  NXDOMAIN;
* **internal zones**: the cluster domain, reverse zones (``in-addr.arpa``,
  ``ip6.arpa``), ``local``, corporate zones the operator names, and every
  name under a top-level domain that does not exist in the root zone
  (``.internal``, ``.corp``, ``.lan``...: the Public Suffix List's ICANN
  section says which exist), which can never resolve on the Internet;
* **hosting suffixes** (the PSL's private section, other than dynamic-DNS
  providers): storage buckets, CDN distributions and PaaS apps whose label is
  an account or resource id, random by design.

:class:`Zones` classifies a name into one :class:`NameKind`. Detectors treat
search expansions and internal names as never being evidence (they are
counted, not scored); hosting names are scored, but a per-name score alone
never blocks one (see :mod:`detectors.verdicts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from detectors.dnsname import canonical_name
from detectors.names import PublicSuffixList, default_psl

# Zones that never resolve on the Internet whatever the PSL says: reverse
# lookups, RFC 6761/8375/9476 special-use names, mDNS.
RESERVED_ZONES = (
    "arpa",
    "local",
    "localhost",
    "localdomain",
    "internal",
    "home.arpa",
    "test",
    "invalid",
    "example",
    "onion",
    "alt",
)


class NameKind(IntEnum):
    PUBLIC = 0  # a name under a delegated TLD, not hosting: scored and blockable
    DYNAMIC_DNS = 1  # under a dynamic-DNS provider's suffix: scored like PUBLIC
    HOSTING = 2  # under a hosting suffix: scored, never blocked on its score alone
    INTERNAL = 3  # an internal zone: never evidence, never blocked by a detector
    SEARCH_EXPANSION = 4  # a name plus a search suffix, answered NXDOMAIN: an artefact
    SUFFIX_ONLY = 5  # a public suffix or the root itself: nobody's domain


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """What the operator tells dnsguard about the cluster's DNS."""

    cluster_domain: str = "cluster.local"
    # the node's search domains after the cluster's own (resolv.conf ``search``)
    search_domains: tuple[str, ...] = ()
    # corporate or other private zones (names under them are internal)
    internal_zones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, names in (
            ("cluster domain", (self.cluster_domain,)),
            ("search domain", self.search_domains),
            ("internal zone", self.internal_zones),
        ):
            for name in names:
                if not name or canonical_name(name) != name:
                    raise ValueError(f"{what} {name!r}: expected a lower-case DNS name")


class Zones:
    """Classifies names as :class:`NameKind` for one cluster."""

    __slots__ = ("_internal", "_psl", "_search_tail", "settings")

    def __init__(
        self, settings: ClusterSettings | None = None, psl: PublicSuffixList | None = None
    ) -> None:
        self.settings = s = settings or ClusterSettings()
        self._psl = psl or default_psl()
        self._internal = frozenset(
            (*RESERVED_ZONES, s.cluster_domain, *s.search_domains, *s.internal_zones)
        )
        self._search_tail = (f"svc.{s.cluster_domain}", s.cluster_domain, *s.search_domains)

    def search_suffixes(self, namespace: str) -> tuple[str, ...]:
        """The search list of a pod in ``namespace``, in the order a resolver tries it."""
        own = (f"{namespace}.svc.{self.settings.cluster_domain}",) if namespace else ()
        return own + self._search_tail

    def expansion_base(self, qname: str, namespace: str) -> str | None:
        """The name a search-path expansion was made from, if ``qname`` is one."""
        for suffix in self.search_suffixes(namespace):
            cut = len(qname) - len(suffix) - 1
            if cut > 0 and qname[cut] == "." and qname.endswith(suffix):
                return qname[:cut]
        return None

    def internal(self, name: str) -> bool:
        """Whether ``name`` is in an internal zone (or under an undelegated TLD)."""
        if not self._psl.delegated(name):
            return True
        internal = self._internal
        rest = name
        while rest:
            if rest in internal:
                return True
            rest = rest.partition(".")[2]
        return False

    def kind(self, qname: str, namespace: str = "", rcode: str | None = None) -> NameKind:
        """What ``qname`` (canonical), asked from ``namespace`` and answered ``rcode``, is."""
        if rcode == "NXDOMAIN" and self.expansion_base(qname, namespace) is not None:
            return NameKind.SEARCH_EXPANSION
        if not qname or self.internal(qname):
            return NameKind.INTERNAL if qname else NameKind.SUFFIX_ONLY
        split = self._psl.split(qname)
        if not split.label:
            return NameKind.SUFFIX_ONLY
        kind = self._psl.suffix_kind(split.suffix)
        if kind == "hosting":
            return NameKind.HOSTING
        if kind == "dynamic-dns":
            return NameKind.DYNAMIC_DNS
        return NameKind.PUBLIC

    def blockable(self, name: str) -> str | None:
        """Why a detector verdict may not target ``name``, or None if it may."""
        if not name:
            return "the root"
        if self.internal(name):
            return "an internal zone"
        if self._psl.is_public_suffix(name):
            return "a public suffix"
        return None
