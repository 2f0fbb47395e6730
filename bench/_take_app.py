"""The minimal Faust app of ``bench/bench_faust_take.py``: one agent reading
the worker benchmark's topic with ``take_events``, doing nothing but a
synchronous sleep per batch (``BENCH_WORK_S``), and one changelog-backed
table written once per client key and batch, as the worker does. Prints
``RESULT {json}`` when ``BENCH_RECORDS`` records have arrived, then stops."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, cast

import faust
from faust.types import StreamT

app = faust.App(
    os.environ.get("BENCH_APP_ID", "take"),
    broker=f"kafka://{os.environ.get('BENCH_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", "take-data"),
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6066")),
    consumer_max_fetch_size=1024 * 1024,
    broker_max_poll_records=1000,
    broker_commit_every=10_000,
    topic_partitions=6,
    producer_acks=-1,
    processing_guarantee="at_least_once",
)
topic = app.topic("b.events", key_type=bytes, value_type=bytes, value_serializer="raw")
table = app.Table("per-client", partitions=None, key_type=bytes, use_partitioner=True)
WORK_S = float(os.environ.get("BENCH_WORK_S", "0"))
WITHIN_S = float(os.environ.get("BENCH_WITHIN_S", "0.02"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "1"))


@app.agent(topic)
async def events(stream: StreamT[bytes]) -> None:
    seen, batches, t0 = 0, 0, 0.0
    async for recs in cast(faust.Stream[bytes], stream).take_events(1000, WITHIN_S):
        t0 = t0 or time.perf_counter()
        seen += len(recs)
        batches += 1
        time.sleep(WORK_S)  # stands for a batch's CPU work: the loop is held
        for key in {r.message.key for r in recs}:
            table[cast(Any, key)] = [seen]
        if seen >= RECORDS:
            elapsed = time.perf_counter() - t0
            result = {"records_per_s": seen / elapsed, "batches": batches}
            print("RESULT " + json.dumps(result), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # Faust's worker stops on it
            return


if __name__ == "__main__":
    app.main()
