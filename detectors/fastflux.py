"""Fast-flux / low-TTL: one name answering with many addresses, each short-lived.

Per query name (bounded LRU), the detector collects the distinct A/AAAA
addresses seen with TTL <= ``max_ttl`` within a window and the distinct /16
(IPv4) or /32 (IPv6) networks they fall in. Many addresses spread over many
networks with low TTLs is the fast-flux signature. CDNs and cloud load
balancers rotate short-lived addresses too, so a name counts only if it is
not under a hosting suffix and no other client asks for its registrable
domain (the pipeline says so), and only once one answer carried several
addresses at a time (``min_answers``), as a flux network's do.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.window import BoundedStates


@dataclass(frozen=True, slots=True)
class FastFluxSettings:
    window_s: float = 600.0
    max_ttl: int = 300
    min_addresses: int = 12
    min_networks: int = 6
    max_addresses_per_name: int = 64
    max_names: int = 50_000
    cooldown_s: float = 3_600.0
    min_answers: int = 3  # addresses in one answer, at least once


class _NameState:
    __slots__ = ("addresses", "last_alert", "min_ttl", "networks", "wide", "window")

    def __init__(self) -> None:
        self.window = -1
        self.addresses: set[str] = set()
        self.networks: set[str] = set()
        self.min_ttl = 1 << 31
        self.last_alert = -1e18
        self.wide = False  # an answer carried min_answers addresses


def network_of(address: str) -> str:
    if ":" in address:
        return ":".join(address.split(":")[:2])
    return ".".join(address.split(".")[:2])


class FastFlux:
    name = "fast_flux"

    def __init__(self, settings: FastFluxSettings | None = None) -> None:
        self.settings = s = settings or FastFluxSettings()
        self.names: BoundedStates[str, _NameState] = BoundedStates(s.max_names, _NameState)

    def update(self, ev: DnsEvent) -> list[Finding]:
        if not ev.answers:
            return []
        s = self.settings
        low = [a for a in ev.answers if a.type in ("A", "AAAA") and a.ttl <= s.max_ttl]
        if not low:
            return []
        st = self.names.get(ev.qname)
        window = int(ev.ts // s.window_s)
        if window != st.window:
            st.window, st.addresses, st.networks, st.min_ttl = window, set(), set(), 1 << 31
            st.wide = False
        if len(low) >= s.min_answers:
            st.wide = True
        for a in low:
            if len(st.addresses) < s.max_addresses_per_name and a.data not in st.addresses:
                st.addresses.add(a.data)
                st.networks.add(network_of(a.data))
            st.min_ttl = min(st.min_ttl, a.ttl)
        if len(st.addresses) < s.min_addresses or ev.ts - st.last_alert < s.cooldown_s:
            return []
        if not st.wide:
            return []
        networks = st.networks
        if len(networks) < s.min_networks:
            return []
        st.last_alert = ev.ts
        score = min(
            1.0,
            0.5 * len(st.addresses) / (2 * s.min_addresses)
            + 0.5 * len(networks) / (2 * s.min_networks),
        )
        return [
            Finding(
                detector=self.name,
                ts=ev.ts,
                client=ev.client,
                namespace=ev.namespace,
                name=ev.qname,
                score=round(score, 4),
                summary=(
                    f"{ev.qname}: {len(st.addresses)} addresses in {len(networks)} networks, "
                    f"TTL <= {st.min_ttl}s, within {s.window_s:.0f}s"
                ),
                evidence={
                    "addresses": sorted(st.addresses)[:16],
                    "distinct_addresses": len(st.addresses),
                    "distinct_networks": len(networks),
                    "min_ttl": st.min_ttl,
                },
            )
        ]
