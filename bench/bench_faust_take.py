"""How fast Faust hands records to an agent that batches with ``take_events``,
against the CPU work the agent does per batch.

The worker once read the events topic as ``stream.take_events(1000, 0.02)``
and spent tens of milliseconds of CPU on each batch; this benchmark is why it
no longer does (``streams/engine/intake.py``). It takes the worker out: a
minimal Faust app (``_take_app.py`` beside this file, started as
``python bench/_take_app.py worker``) reads the worker benchmark's topic
(``bench.bench_worker.fill``: the same batch records) with that
``take_events`` call and only sleeps synchronously per batch, standing for the
batch's CPU work. The first row (no work) is the baseline of the same run;
the others show what per-batch work costs delivery. The app runs at log level
info: at warning, Faust's worker sets the root logger to DEBUG for its
progress spinner, and every debug call inside Faust and aiokafka then costs a
log record (the dnsguard worker turns the spinner off).

Run: ``.venv/bin/python -m bench.bench_faust_take`` (prints a table, writes
bench/results/faust_take.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.bench_worker import fill
from streams.settings import load_stack_settings
from streams.stack.processes import free_ports
from streams.stack.services import Kafka, Redis, Stack

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "bench" / "_take_app.py"
OUT = ROOT / "bench" / "results" / "faust_take.json"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# (per-batch work in seconds, take_events' within in seconds)
CASES = ((0.0, 0.02), (0.010, 0.02), (0.037, 0.02), (0.037, 0.2))


def one_run(
    bootstrap: str, records: int, work_s: float, within_s: float, work: Path
) -> dict[str, float]:
    (web,) = free_ports(1)
    app_id = f"take-{time.time_ns()}"
    env = dict(os.environ, BENCH_BOOTSTRAP=bootstrap, BENCH_APP_ID=app_id,
               BENCH_WEB_PORT=str(web), BENCH_RECORDS=str(records), BENCH_WORK_S=str(work_s),
               BENCH_WITHIN_S=str(within_s), BENCH_DATADIR=str(work / app_id),
               PYTHONPATH=str(ROOT))  # fmt: skip
    out = subprocess.run([sys.executable, str(APP), "worker", "-l", "info"], env=env,
                         capture_output=True, text=True, timeout=600, cwd=work)  # fmt: skip
    for line in (out.stdout + out.stderr).splitlines():
        if "RESULT " in line:
            result: dict[str, float] = json.loads(line.split("RESULT ", 1)[1])
            return result
    raise RuntimeError(f"the take app printed no result:\n{(out.stdout + out.stderr)[-2000:]}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dnsguard-bench-take-"))
    k, c, rp = free_ports(3)
    stack = Stack(replace(load_stack_settings({}), state_dir=work, kafka_port=k,
                          kafka_controller_port=c, redis_port=rp), (Redis, Kafka))  # fmt: skip
    stack.up()
    try:
        records = asyncio.run(fill(stack.settings.kafka_bootstrap))
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(ROUNDS):
            for work_s, within_s in CASES:
                name = f"{work_s * 1000:.0f} ms work per batch, within {within_s * 1000:.0f} ms"
                res = one_run(stack.settings.kafka_bootstrap, records, work_s, within_s, work)
                runs.setdefault(name, []).append(res)
    finally:
        stack.down()
    med = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
           for name, rs in runs.items()}  # fmt: skip
    base = next(iter(med.values()))["records_per_s"]
    print(f"{records} batch records; Faust take_events(1000, within); median of {ROUNDS} rounds")
    print(f"{'case':<40}{'records/s':>11}{'batches':>9}{'ratio':>8}")
    for name, m in med.items():
        print(f"{name:<40}{m['records_per_s']:>11,.0f}{m['batches']:>9.0f}"
              f"{m['records_per_s'] / base:>8.2f}")  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"bench": "faust_take", "records": records, "medians": med,
                               "rounds": runs}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
