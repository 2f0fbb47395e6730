"""``dnsguard report``: per-namespace top domains, blocks by the rule that
decided them, and shadow-IT usage, from v1 events."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.operator_policy import CompiledPolicy, OperatorPolicy, Rule, Scope, compile_policy
from streams.cli.policy import build_report

pytestmark = pytest.mark.unit


def ev(ns: str, name: str, action: str = "allowed") -> dict:
    return {"node": {"namespace": ns, "workload": "web"}, "query": {"name": name}, "action": action}


EVENTS = [
    ev("shop", "www.google.com"), ev("shop", "mail.google.com"), ev("shop", "cdn.example.org"),
    ev("shop", "casino.example", "blocked"), ev("shop", "x.casino.example", "blocked"),
    ev("shop", "files.dropbox.com", "shadow"), ev("pay", "api.stripe.com"),
    {"garbage": True},
]  # fmt: skip


def test_report_counts_domains_blocks_by_rule_and_shadow_it() -> None:
    policy = OperatorPolicy((
        Rule(Scope(), "suffix", "casino.example", "nxdomain", comment="gambling", line=3),
        Rule(Scope(), "suffix", "dropbox.com", "log", comment="shadow IT", line=7),
    ))  # fmt: skip
    report = build_report(EVENTS, CompiledPolicy(compile_policy(policy)), top=2)
    assert set(report) == {"pay", "shop"}
    shop = report["shop"]
    assert shop["events"] == 6
    assert shop["top_domains"][0] == ("google.com", 2)
    assert shop["blocked_by_rule"] == [
        ("operator rule (line 3): nxdomain suffix casino.example in the global scope: gambling", 2)
    ]
    assert shop["shadow_it"] == [("dropbox.com", 1)]
    assert report["pay"]["blocked_by_rule"] == []


def test_report_command_writes_csv_and_json(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "report", "--events", str(events), "--no-policy",
         "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")],
        check=True, capture_output=True,
    )  # fmt: skip
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["shop"]["blocked_by_rule"] == [["unknown (policy not available)", 2]]
    with (tmp_path / "r.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {"namespace": "shop", "kind": "shadow_it", "key": "dropbox.com", "count": "1"} in rows


def test_report_reads_single_events_and_batch_records(tmp_path: Path) -> None:
    """The events topic holds batch records (a JSON array of one client's v1
    events); a JSONL file may hold either shape. Both feed the report alike."""
    from streams.cli.policy import _events_from_file, _v1_events

    one = {"v": 1, "query": {"name": "a.com"}}
    two = {"v": 1, "query": {"name": "b.com"}}
    assert _v1_events(json.dumps([one, two]).encode()) == [one, two]
    assert _v1_events(json.dumps(one)) == [one]
    assert _v1_events(b"{broken") == []
    assert _v1_events(b"[1, 2]") == []
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps([one, two]) + "\n\n" + json.dumps(one) + "\nnot json\n")
    assert list(_events_from_file(path)) == [one, two, one]
