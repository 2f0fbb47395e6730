"""``dnsguard replay`` throughput on a generated 1M-event JSONL.

The file is what the collector's JSONL sink writes (one v2 batch record per
line, requests of REQUEST_EVENTS simulated events split by client); the same
events as v1 lines, one event per line, are replayed too. The baseline of the
same run is a pass that only decodes the v2 file into detector events (the
floor of any replay), so the ratio says how much of replay is detection.

Run: ``.venv/bin/python -m bench.bench_replay`` (writes bench/results/replay.json;
BENCH_EVENTS, BENCH_ROUNDS change the size and the number of rounds).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from detectors.pipeline import Pipeline
from models import artifact
from streams.engine.replay import replay
from streams.ingest.collector import records_from_v1
from streams.ingest.decode import decode_record
from streams.sim.workloads import Simulator

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("BENCH_EVENTS", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
REQUEST_EVENTS = 500
OUT = ROOT / "bench" / "results" / "replay.json"


def generate(v2_path: Path, v1_path: Path) -> int:
    """N simulated events (the six-pod mix, one hour after another) to both files."""
    sim = Simulator()
    start = time.time() - 86_400
    sent = 0
    with v2_path.open("wb") as v2, v1_path.open("wb") as v1:
        request: list[bytes] = []
        while sent < N:
            for e in sim.events(start, 600):
                raw = json.dumps(e, separators=(",", ":")).encode()
                request.append(raw)
                v1.write(raw + b"\n")
                sent += 1
                if len(request) == REQUEST_EVENTS or sent >= N:
                    records, dead = records_from_v1(request)
                    if dead:
                        raise RuntimeError(f"invalid simulated events: {dead[0]!r}")
                    v2.writelines(value + b"\n" for _, value in records)
                    request = []
                if sent >= N:
                    break
            start += 600
    return sent


def decode_only(path: Path) -> float:
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            n += len(decode_record(line)[0])
    if n != N:
        raise RuntimeError(f"decoded {n} events of {N}")
    return N / (time.perf_counter() - t0)


def replay_rate(path: Path, out: Path) -> float:
    pipeline = Pipeline(artifact.load()[0])
    t0 = time.perf_counter()
    result = replay(pipeline, path, out, progress=False)
    elapsed = time.perf_counter() - t0
    if result.events != N or result.rejected:
        raise RuntimeError(f"replayed {result.events} events, {result.rejected} rejected, of {N}")
    return N / elapsed


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dnsguard-bench-replay-"))
    v2_path, v1_path = work / "events-v2.jsonl", work / "events-v1.jsonl"
    generate(v2_path, v1_path)
    rates: dict[str, list[float]] = {"decode only (v2)": [], "replay (v2)": [], "replay (v1)": []}
    for r in range(ROUNDS):
        rates["decode only (v2)"].append(decode_only(v2_path))
        rates["replay (v2)"].append(replay_rate(v2_path, work / f"out-v2-{r}"))
        rates["replay (v1)"].append(replay_rate(v1_path, work / f"out-v1-{r}"))
    med = {k: statistics.median(v) for k, v in rates.items()}
    sizes = {"v2": v2_path.stat().st_size, "v1": v1_path.stat().st_size}
    print(f"{N:,} events; v2 JSONL {sizes['v2'] / N:.0f} bytes/event, v1 {sizes['v1'] / N:.0f}; "
          f"median of {ROUNDS} rounds")  # fmt: skip
    for name, v in med.items():
        print(f"{name:18s} {v:10,.0f} events/s")
    ratio = med["replay (v2)"] / med["decode only (v2)"]
    print(f"replay / decode only: {ratio:.2f} (target: replay >= 100,000 events/s)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"bench": "replay", "events": N, "bytes_per_event": {k: v / N for k, v in sizes.items()},
                               "median_events_per_s": med, "ratio_vs_decode_only": ratio,
                               "rounds": rates}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
