"""Alerts as OCSF DNS Activity (class 4003) and their de-duplication.

An alert's id is a hash of what it is about (detector, client, name, time),
so replaying the same events yields the same ids; a Redis ``SET NX`` on the id
before producing keeps a replay (after a crash, or a second run) from
publishing the same alert twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from detectors.verdicts import Decision

OCSF_VERSION = "1.3.0"
SEVERITY = {"dga": 4, "tunnel": 4, "fast_flux": 3, "nxdomain_storm": 3, "rate": 2, "new_domain": 1}


def alert_id(d: Decision) -> str:
    f = d.finding
    key = json.dumps([f.detector, f.client, f.name, round(f.ts, 6)], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def ocsf_alert(d: Decision) -> dict[str, Any]:
    """One OCSF DNS Activity record carrying dnsguard's finding and verdict."""
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
            "uid": alert_id(d),
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
                "score": f.score,
                "evidence": f.evidence,
                "namespace": f.namespace or ns,
                "disposition": d.disposition,
                "verdict": verdict,
            }
        },
    }
