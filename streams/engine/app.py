"""Builds the Faust application and everything its agents need, from settings."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detectors.dga_detector import DgaSettings
from detectors.pipeline import DetectorSettings, Pipeline
from detectors.verdicts import PolicySettings
from detectors.zones import ClusterSettings
from models import artifact
from streams.settings import WorkerSettings

# Bytes fetched per partition and request. Records that aiokafka fetched and
# Faust has not yet delivered for longer than aiokafka's prefetch backoff (0.1 s)
# are left out of the next fetch request; if the partitions that request does
# name are idle, the broker holds it for Faust's fetch wait (1.5 s) and nothing
# else is fetched from that broker meanwhile. A fetch that the worker delivers
# well within 0.1 s avoids that: 256 KiB per partition (about 75 batch records
# of 19 events) did, 1 MiB (Kafka's default) stalled every second or so
# (bench/bench_worker.py: 60k against 35k events/s).
FETCH_BYTES = 256 << 10


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    events: Counter
    findings: Counter
    verdicts: Counter
    dlq: Counter
    latency: Histogram
    lag: Gauge
    pending_verdicts: Gauge
    states_restored: Counter
    states_refused: Counter
    names: Counter
    late: Counter
    batch_records: Histogram
    batch_seconds: Histogram
    intake_records: Gauge

    @classmethod
    def create(cls) -> WorkerMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            events=Counter("dnsguard_worker_events", "Events processed", registry=r),
            findings=Counter(
                "dnsguard_worker_findings", "Findings by detector", ["detector"], registry=r
            ),
            verdicts=Counter(
                "dnsguard_worker_verdicts", "Verdicts by action", ["action"], registry=r
            ),
            dlq=Counter("dnsguard_worker_dlq", "Events sent to the dead-letter topic", registry=r),
            latency=Histogram(
                "dnsguard_worker_event_to_verdict_seconds",
                "From the timestamp of a batch's oldest event to the batch's findings and "
                "verdicts being decided (verdicts are written to Redis right after)",
                buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=r,
            ),
            lag=Gauge(
                "dnsguard_worker_consumer_lag",
                "Records behind the end of the events topic",
                ["partition"],
                registry=r,
            ),
            pending_verdicts=Gauge(
                "dnsguard_worker_pending_verdicts", "Verdicts waiting for Redis", registry=r
            ),
            states_restored=Counter(
                "dnsguard_worker_client_states_restored",
                "Clients whose detector state was taken up from the changelog-backed table "
                "(after a restart, or on taking over their partition)",
                registry=r,
            ),
            states_refused=Counter(
                "dnsguard_worker_client_states_refused",
                "Client snapshots in the table that could not be read (the client starts afresh)",
                registry=r,
            ),
            names=Counter(
                "dnsguard_worker_names",
                "Events by what their query name is: public, dynamic_dns, hosting, internal, "
                "search_expansion (a resolver's search-path artefact), suffix_only",
                ["kind"],
                registry=r,
            ),
            late=Counter(
                "dnsguard_worker_late_events",
                "Events a detector could not count: later (in event time) than it waits "
                "for a client's stragglers (the rate detector: 5 s past their interval)",
                ["detector"],
                registry=r,
            ),
            batch_records=Histogram(
                "dnsguard_worker_batch_records",
                "Records of the events topic handled together",
                buckets=(1, 10, 50, 100, 250, 500, 1000, 2500),
                registry=r,
            ),
            batch_seconds=Histogram(
                "dnsguard_worker_batch_seconds",
                "Time to handle one batch (decode, detect, publish)",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=r,
            ),
            intake_records=Gauge(
                "dnsguard_worker_intake_records",
                "Records delivered by Faust and waiting for a batch (read ahead; at its "
                "bound the worker stops taking records in)",
                registry=r,
            ),
        )


def load_allowlist(path: Path | None, top_n: int) -> list[str]:
    """The first ``top_n`` domains of a CSV with a ``domain`` column (a popularity ranking)."""
    if path is None or top_n == 0:
        return []
    out: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.append(row["domain"])
            if len(out) >= top_n:
                break
    return out


def build_pipeline(settings: WorkerSettings) -> Pipeline:
    model, _ = artifact.load()
    detector_settings = DetectorSettings(
        dga=replace(
            DgaSettings(),
            evidence_threshold=settings.dga_evidence_threshold,
            block_threshold=settings.dga_block_threshold,
        ),
        policy=PolicySettings(
            shadow_global=settings.shadow, global_min_namespaces=settings.global_min_namespaces
        ),
        cluster=ClusterSettings(
            settings.cluster_domain, settings.search_domains, settings.internal_zones
        ),
    )
    return Pipeline(
        model, detector_settings, load_allowlist(settings.allowlist_file, settings.allowlist_top_n)
    )


def create_app(settings: WorkerSettings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=settings.kafka_security.faust_credentials(),
        store="memory://",  # tables are rebuilt from their changelog topics on start
        datadir=str(settings.data_dir),
        web_port=settings.web_port,
        web_host=settings.web_host or settings.web_bind,
        web_bind=settings.web_bind,
        topic_partitions=settings.table_partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        processing_guarantee="at_least_once",
        # Per partition and fetch (see FETCH_BYTES); a bigger record is still
        # delivered (KIP-74).
        consumer_max_fetch_size=FETCH_BYTES,
        broker_commit_every=10_000,
        broker_max_poll_records=settings.batch_max,  # records per poll: one batch
        table_cleanup_interval=30.0,
        broker_session_timeout=float(settings.session_timeout_s),
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
    )


def topic_config(app: faust.App, settings: WorkerSettings) -> dict[str, Any]:
    return {
        "events": app.topic(
            settings.events_topic, key_type=bytes, value_type=bytes, value_serializer="raw"
        ),
        "alerts": app.topic(
            settings.alerts_topic, key_type=bytes, value_type=bytes, value_serializer="raw"
        ),
        "verdicts": app.topic(
            settings.verdicts_topic, key_type=bytes, value_type=bytes, value_serializer="raw"
        ),
        "dlq": app.topic(
            settings.dlq_topic, key_type=bytes, value_type=bytes, value_serializer="raw"
        ),
    }
