"""Alerts in OCSF (default) and in ECS field names (``DNSGUARD_ALERT_FORMAT=ecs``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from detectors.findings import Finding
from detectors.verdicts import VerdictPolicy
from streams.engine.alerts import alert_id, ecs_alert, ocsf_alert
from streams.engine.step import RENDERERS
from streams.engine.worker import Worker
from streams.errors import ConfigError
from streams.settings import load_worker_settings

pytestmark = pytest.mark.unit


def decision():  # type: ignore[no-untyped-def]
    f = Finding("dga", 1_795_600_000.25, "payments/batch-1f0a", "payments", "kqzvbwxj.com", 0.9993,
                "DGA-like name", {"qname": "www.kqzvbwxj.com"})  # fmt: skip
    return VerdictPolicy().decide(f)


def test_ecs_alert_carries_the_same_facts_in_ecs_fields() -> None:
    d = decision()
    doc = ecs_alert(d)
    assert doc["@timestamp"] == "2026-11-25T09:46:40.250Z"
    assert doc["event"]["kind"] == "alert"
    assert doc["event"]["id"] == alert_id(d)
    assert doc["event"]["severity"] == 99
    assert doc["event"]["risk_score"] == 99.9
    assert doc["dns"]["question"] == {
        "name": "www.kqzvbwxj.com",
        "registered_domain": "kqzvbwxj.com",
    }
    assert doc["orchestrator"] == {
        "namespace": "payments",
        "resource": {"type": "pod", "name": "batch-1f0a"},
    }
    assert doc["rule"]["name"] == "dga"
    assert doc["dnsguard"]["verdict"]["action"] == "nxdomain"
    assert ocsf_alert(d)["metadata"]["uid"] == doc["event"]["id"]


def test_the_worker_renders_the_configured_format() -> None:
    d = decision()
    for fmt, key in (("ocsf", "class_uid"), ("ecs", "ecs")):
        settings = load_worker_settings({"DNSGUARD_ALERT_FORMAT": fmt.upper()})
        chosen = Worker.alert_format.fget(SimpleNamespace(settings=settings))  # type: ignore[attr-defined]
        assert chosen == fmt
        assert key in RENDERERS[chosen](d, None)
    with pytest.raises(ConfigError, match="ALERT_FORMAT"):
        load_worker_settings({"DNSGUARD_ALERT_FORMAT": "cef"})


def test_worker_listening_on_all_addresses_must_say_where_it_is_reached() -> None:
    with pytest.raises(ConfigError, match="WORKER_WEB_HOST is required"):
        load_worker_settings({"DNSGUARD_WORKER_WEB_BIND": "0.0.0.0"})
    s = load_worker_settings(
        {"DNSGUARD_WORKER_WEB_BIND": "0.0.0.0", "DNSGUARD_WORKER_WEB_HOST": "10.1.2.3"}
    )
    assert (s.web_bind, s.web_host) == ("0.0.0.0", "10.1.2.3")


def test_the_worker_log_level_is_a_setting_and_a_wrong_one_is_refused() -> None:
    assert load_worker_settings({}).log_level == "warning"
    assert load_worker_settings({"DNSGUARD_WORKER_LOG_LEVEL": "INFO"}).log_level == "info"
    with pytest.raises(ConfigError, match="WORKER_LOG_LEVEL"):
        load_worker_settings({"DNSGUARD_WORKER_LOG_LEVEL": "verbose"})
