"""Query-rate anomaly per client against its own EWMA baseline.

Queries are counted in fixed intervals; when an interval closes, its count is
compared with the client's exponentially weighted mean and variance, then
folded into them. A client is judged only after ``warmup_intervals`` closed
intervals (cold start), and a spike must also clear an absolute floor so that
quiet clients going from 1 to 5 queries do not alert.

Intervals are of event time, and a client's events do not arrive in time
order: each Envoy worker thread ships its own batches, so one thread's
queries of a pod can reach the worker seconds after another's newer ones. An
interval therefore stays open for ``lateness_s`` after its end (of the
client's event time) and closes only then; an event later than that is not
counted (``late_dropped``). ``lateness_s`` is at most one interval, so at most
two intervals of a client are open at once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from detectors.events import DnsEvent
from detectors.findings import Finding
from detectors.window import BoundedStates


@dataclass(frozen=True, slots=True)
class RateSettings:
    interval_s: float = 10.0
    alpha: float = 0.1  # EWMA weight of the newest interval
    warmup_intervals: int = 12
    z_threshold: float = 6.0
    min_count: int = 200
    max_clients: int = 100_000
    max_gap_intervals: int = 360  # idle longer than this: the baseline restarts
    lateness_s: float = 5.0  # how long an interval waits for a client's late events

    def __post_init__(self) -> None:
        if not 0 <= self.lateness_s <= self.interval_s:
            raise ValueError("rate lateness_s: from 0 to interval_s")


class _ClientRate:
    __slots__ = ("ahead", "count", "interval", "mean", "seen", "var")

    def __init__(self) -> None:
        self.interval = -1  # the oldest open interval
        self.count = 0  # its queries so far
        self.ahead = 0  # queries of the interval after it (open too, within lateness)
        self.mean = 0.0
        self.var = 0.0
        self.seen = 0


class RateAnomaly:
    name = "rate"

    def __init__(self, settings: RateSettings | None = None) -> None:
        self.settings = s = settings or RateSettings()
        self.clients: BoundedStates[str, _ClientRate] = BoundedStates(s.max_clients, _ClientRate)
        self.late_dropped = 0  # events later than lateness_s: not counted

    def _fold(self, st: _ClientRate, count: int) -> None:
        a = self.settings.alpha
        if st.seen == 0:
            st.mean, st.var = float(count), 0.0
        else:
            diff = count - st.mean
            incr = a * diff
            st.mean += incr
            st.var = (1 - a) * (st.var + diff * incr)
        st.seen += 1

    def dump(self, client: str) -> list[float] | None:
        """The client's baseline as plain numbers (for a changelog-backed table)."""
        st = self.clients.peek(client)
        if st is None:
            return None
        return [st.interval, st.count, st.mean, st.var, st.seen, st.ahead]

    def forget(self, client: str) -> None:
        self.clients.discard(client)

    def load(self, client: str, values: list[float]) -> None:
        """The client's baseline from :meth:`dump`'s snapshot (one without the
        next interval's count, as written before intervals waited for late
        events, is taken with none)."""
        interval, count, mean, var, seen, *rest = values
        (ahead,) = rest or [0]
        st = _ClientRate()
        st.interval, st.count, st.seen = int(interval), int(count), int(seen)
        st.ahead = int(ahead)
        st.mean, st.var = float(mean), float(var)
        self.clients.put(client, st)

    def update(self, ev: DnsEvent) -> list[Finding]:
        return self.update_many([ev])

    def update_many(self, events: Sequence[DnsEvent]) -> list[Finding]:
        """Events in time order per client (a client's events best together:
        they are counted by the run of one interval)."""
        out: list[Finding] = []
        interval_s = self.settings.interval_s
        for (_, idx), run in itertools.groupby(
            events, key=lambda ev: (ev.client, int(ev.ts // interval_s))
        ):
            same = list(run)
            found = self._count(same[-1], idx, len(same))
            if found:
                out += found
        return out

    def _count(self, ev: DnsEvent, idx: int, n: int) -> list[Finding]:
        """``n`` queries of ``ev``'s client in interval ``idx``; ``ev`` is the
        newest of them."""
        s = self.settings
        st = self.clients.get(ev.client)
        findings: list[Finding] = []
        if st.interval < 0:
            st.interval = idx
        # every interval whose end is lateness_s behind this event closes
        closable = math.floor((ev.ts - s.lateness_s) / s.interval_s) - 1
        if closable - st.interval >= s.max_gap_intervals:
            st.__init__()  # type: ignore[misc]  # idle too long: the baseline restarts
            st.interval = idx
        while st.interval <= closable:
            findings += self._close(ev, st)
            st.interval += 1
            st.count, st.ahead = st.ahead, 0
            if st.count == 0 and st.interval <= closable:
                for _ in range(closable - st.interval + 1):  # empty intervals count as zero
                    self._fold(st, 0)
                st.interval = closable + 1
        if idx < st.interval:
            self.late_dropped += n  # its interval has closed
        elif idx == st.interval:
            st.count += n
        else:  # the next interval: lateness_s <= interval_s keeps idx within the open two
            st.ahead += n
        return findings

    def _close(self, ev: DnsEvent, st: _ClientRate) -> list[Finding]:
        s = self.settings
        count = st.count
        out: list[Finding] = []
        if st.seen >= s.warmup_intervals and count >= s.min_count:
            std = math.sqrt(max(st.var, 1.0))
            z = (count - st.mean) / std
            if z >= s.z_threshold:
                out.append(
                    Finding(
                        detector=self.name,
                        ts=(st.interval + 1) * s.interval_s,
                        client=ev.client,
                        namespace=ev.namespace,
                        name=None,
                        score=round(min(1.0, z / (3 * s.z_threshold)), 4),
                        summary=(
                            f"{ev.client}: {count} queries in {s.interval_s:.0f}s, baseline "
                            f"{st.mean:.1f} ± {std:.1f} (z={z:.1f})"
                        ),
                        evidence={
                            "count": count,
                            "baseline_mean": round(st.mean, 2),
                            "baseline_std": round(std, 2),
                            "z": round(z, 2),
                            "interval_s": s.interval_s,
                        },
                    )
                )
        self._fold(st, count)
        return out
