"""Alerts as OCSF DNS Activity (class 4003), or as Elastic Common Schema
documents (``DNSGUARD_ALERT_FORMAT=ecs``), and their de-duplication.

An alert belongs to an incident (one per client and detector, see
:mod:`detectors.incidents`) and carries it under ``unmapped.dnsguard.incident``
(first and last seen, findings so far, examples). Its id is a hash of the
incident and the alert's number in it (or, without an incident, of what the
finding is about), so replaying the same events yields the same ids; a Redis
``SET NX`` on the id before producing keeps a replay (after a crash, or a
second run) from publishing the same alert twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from detectors.verdicts import Decision

OCSF_VERSION = "1.3.0"
SEVERITY = {"dga": 4, "tunnel": 4, "fast_flux": 3, "nxdomain_storm": 3, "rate": 2, "new_domain": 1}


def alert_id(d: Decision, incident: dict[str, Any] | None = None) -> str:
    f = d.finding
    if incident is not None:
        key = json.dumps([incident["id"], incident["alerts"]], separators=(",", ":"))
    else:
        key = json.dumps([f.detector, f.client, f.name, round(f.ts, 6)], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def ocsf_alert(d: Decision, incident: dict[str, Any] | None = None) -> dict[str, Any]:
    """One OCSF DNS Activity record carrying dnsguard's finding, its incident and verdict."""
    f = d.finding
    ns, _, pod = f.client.partition("/")
    verdict = d.verdict.as_dict() if d.verdict is not None else None
    qname = f.evidence.get("qname") or f.name
    return {
        "class_uid": 4003,
        "class_name": "DNS Activity",
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": 6,  # Traffic
        "activity_name": "Traffic",
        "type_uid": 400306,
        "time": int(f.ts * 1000),
        "severity_id": SEVERITY.get(f.detector, 1),
        "message": f.summary,
        "metadata": {
            "uid": alert_id(d, incident),
            "version": OCSF_VERSION,
            "product": {"name": "dnsguard", "vendor_name": "dnsguard"},
        },
        "src_endpoint": {
            "hostname": pod or f.client,
            "namespace_pid": None,
            "owner": {"name": f.client},
        },
        "query": {"hostname": qname} if qname else None,
        "disposition": {"blocked": "Blocked", "shadow": "Logged", "allowlisted": "Allowed"}.get(
            d.disposition, "Logged"
        ),
        "unmapped": {
            "dnsguard": {
                "detector": f.detector,
                "name": f.name,
                "score": f.score,
                "evidence": f.evidence,
                "namespace": f.namespace or ns,
                "disposition": d.disposition,
                # why the verdict has its scope, or why there is none
                "why": d.why,
                "verdict": verdict,
                "incident": incident,
            }
        },
    }


ECS_VERSION = "8.11.0"
ECS_SEVERITY = {1: 21, 2: 47, 3: 73, 4: 99}  # OCSF severity_id -> ECS event.severity (0-100)


def ecs_alert(d: Decision, incident: dict[str, Any] | None = None) -> dict[str, Any]:
    """The same alert in ECS field names (ECS core fields, dnsguard's own under ``dnsguard``)."""
    import datetime as dt

    f = d.finding
    ns, _, pod = f.client.partition("/")
    qname = f.evidence.get("qname") or f.name
    severity = SEVERITY.get(f.detector, 1)
    doc: dict[str, Any] = {
        "@timestamp": dt.datetime.fromtimestamp(f.ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "ecs": {"version": ECS_VERSION},
        "message": f.summary,
        "event": {
            "id": alert_id(d, incident),
            "kind": "alert",
            "category": ["network", "threat"],
            "type": ["protocol", "indicator"],
            "dataset": "dnsguard.alerts",  # the ECS dataset (not a topic name)
            "module": "dnsguard",
            "action": f.detector,
            "severity": ECS_SEVERITY[severity],
            "risk_score": round(f.score * 100, 1),
        },
        "rule": {"name": f.detector, "description": f.summary, "ruleset": "dnsguard"},
        "orchestrator": {"namespace": f.namespace or ns, "resource": {"type": "pod", "name": pod or f.client}},
        "observer": {"vendor": "dnsguard", "product": "dnsguard", "type": "dns"},
        "dnsguard": {"detector": f.detector, "name": f.name, "score": f.score, "evidence": f.evidence,
                     "disposition": d.disposition, "why": d.why, "incident": incident,
                     "verdict": d.verdict.as_dict() if d.verdict is not None else None},
    }  # fmt: skip
    if qname:
        doc["dns"] = {"type": "query", "question": {"name": qname}}
        if f.name and f.name != qname:
            doc["dns"]["question"]["registered_domain"] = f.name
    return doc
