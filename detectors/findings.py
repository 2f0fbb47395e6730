"""What a detector reports: a finding about a client, a name, or both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str  # "dga", "nxdomain_storm", "tunnel", "rate", "new_domain", "fast_flux"
    ts: float
    client: str
    namespace: str
    name: str | None  # the domain the finding is about, if any (registrable or exact)
    score: float  # detector-specific strength in [0, 1]
    summary: str  # one human-readable line
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str | None, float]:
        """Identity used to de-duplicate alerts on replay."""
        return (self.detector, self.client, self.name, self.ts)
