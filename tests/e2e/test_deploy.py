"""The deployment files in deploy/: Envoy bootstraps pass ``envoy --mode
validate`` with the built module; Kubernetes manifests pass the schemas that
kubernetes-validate ships (offline), and custom resources (Strimzi, Istio)
carry the fields dnsguard relies on; every filter configuration in them is
one the filter accepts."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from detectors.events import client_identity
from streams.stack.envoy import NATIVE_DIR, NATIVE_PATH
from streams.stack.services import envoy_binary
from tests.e2e.conftest import TlsMaterial

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.33.0"
PLACEHOLDERS = {
    "DNSGUARD_NAMESPACE": "shop", "DNSGUARD_WORKLOAD": "web", "DNSGUARD_POD": "web-7d9f",
    "DNSGUARD_COLLECTOR_TOKEN": "collector-t0ken-0123", "DNSGUARD_FEED_TOKEN": "feed-t0ken-0123456",
    "DNSGUARD_NAMESPACE_TOKEN": "shop-t0ken-01234567",
    # the Ed25519 public key of the seed of 32 bytes 0x01
    "DNSGUARD_FEED_KEY_ID": "k1", "DNSGUARD_FEED_PUBLIC_KEY": "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=",
}  # fmt: skip
# the filter's configuration fields (filter/crates/adapter/src/config.rs, deny_unknown_fields)
FILTER_FIELDS = {"mode", "collector_cluster", "collector_authority", "collector_path", "token", "batch_size",
                 "flush_interval_ms", "max_inflight", "queue_max", "max_attempts", "collector_timeout_ms",
                 "query_timeout_ms", "max_pending", "max_answers", "metadata_keys", "feed", "sinkhole"}  # fmt: skip
FEED_FIELDS = {"cluster", "authority", "path", "token", "keys", "poll_interval_ms", "long_poll_ms",
               "timeout_ms", "max_bytes", "max_rules"}  # fmt: skip
# the UDP module's configuration fields (filter/crates/native/src/config.rs, deny_unknown_fields)
MODULE_FIELDS = {"node", "collector", "feed", "sinkhole"}
MODULE_COLLECTOR_FIELDS = {
    "address",
    "path",
    "token",
    "max_queue",
    "max_batch",
    "flush_ms",
    "timeout_ms",
}
MODULE_FEED_FIELDS = {"address", "path", "token", "keys", "long_poll_ms", "poll_interval_ms",
                      "timeout_ms", "max_bytes", "max_rules"}  # fmt: skip
MODULE_FILTER = "envoy.extensions.filters.udp.dynamic_modules.v3.DynamicModuleUdpListenerFilter"
MODULE_NETWORK_FILTER = (
    "envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter"
)
BOOTSTRAPS = ["sidecar.yaml", "egress-gateway.yaml", "node-local-dns.yaml"]


def render(text: str) -> str:
    for k, v in PLACEHOLDERS.items():
        text = text.replace("${" + k + "}", v)
    assert not re.findall(r"\$\{\w+\}", text)
    return text


def check_filter_config(cfg: dict) -> None:
    assert cfg["mode"] in ("tcp", "doh")
    assert cfg["collector_cluster"]
    assert set(cfg) <= FILTER_FIELDS, set(cfg) - FILTER_FIELDS
    feed = cfg["feed"]
    assert set(feed) <= FEED_FIELDS
    assert feed["cluster"]
    assert 1 <= len(feed["keys"]) <= 2
    # public keys only: a sidecar's configuration cannot sign a policy
    assert all(set(k) == {"id", "public_key"} for k in feed["keys"])
    assert len(cfg["token"]) >= 16
    assert len(feed["token"]) >= 16


def check_filter_attribution(node: dict, cfg: dict, name: str) -> None:
    """Whom the Wasm filter's events are about: its node's identity comes from
    the Envoy node metadata (the keys its configuration names, Istio's by
    default), and a client key takes that pod, else that workload, before
    the connection's peer IP: a sidecar's own pod; behind a gateway, each
    peer (the gateway's pod there would make every workload one client)."""
    keys = {"namespace": "NAMESPACE", "workload": "WORKLOAD_NAME", "pod": "NAME",
            **cfg.get("metadata_keys", {})}  # fmt: skip
    meta = node.get("metadata", {})
    namespace, workload, pod = (meta.get(keys[k], "") for k in ("namespace", "workload", "pod"))
    assert namespace
    peer = "10.1.2.3"
    key = client_identity(namespace, pod, workload, peer)
    assert key == (f"{namespace}/{pod}" if name == "sidecar.yaml" else peer), key


def check_module_config(cfg: dict, listeners: dict[str, dict], name: str) -> None:
    assert set(cfg) <= MODULE_FIELDS, set(cfg) - MODULE_FIELDS
    node = cfg["node"]
    assert node["namespace"]
    # whom an event is about: a sidecar's own pod; behind node-local DNS or a
    # gateway, the asking pod's IP (a node's pod or workload would make every
    # pod one client)
    peer = "10.1.2.3"
    key = client_identity(node["namespace"], node.get("pod", ""), node.get("workload", ""), peer)
    if name == "sidecar.yaml":
        assert key == f"{node['namespace']}/{node['pod']}"
    else:
        assert key == peer, key
    collector, feed = cfg["collector"], cfg["feed"]
    assert set(collector) <= MODULE_COLLECTOR_FIELDS
    assert set(feed) <= MODULE_FEED_FIELDS
    assert all(set(k) == {"id", "public_key"} for k in feed["keys"])
    assert len(collector["token"]) >= 16
    assert len(feed["token"]) >= 16
    # the module speaks plain HTTP only to loopback relays that Envoy carries
    # to the dnsguard_collector and dnsguard_feed clusters
    for part, cluster in ((collector, "dnsguard_collector"), (feed, "dnsguard_feed")):
        host, port = part["address"].rsplit(":", 1)
        assert host == "127.0.0.1"
        relay = listeners[int(port)]
        proxy = relay["filter_chains"][0]["filters"][-1]["typed_config"]
        assert proxy["cluster"] == cluster


def module_configs(doc: dict, kind: str = MODULE_FILTER) -> list[dict]:
    """The native module's configurations: as UDP listener filters, or
    (``MODULE_NETWORK_FILTER``) as network filters."""
    filters = [f for lst in doc["static_resources"]["listeners"]
               for f in lst.get("listener_filters", [])
               + [g for chain in lst.get("filter_chains", []) for g in chain["filters"]]]  # fmt: skip
    return [json.loads(f["typed_config"]["filter_config"]["value"])
            for f in filters if f["typed_config"]["@type"].endswith(kind)]  # fmt: skip


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    if not NATIVE_PATH.exists():
        raise RuntimeError(
            f"{NATIVE_PATH} is missing: run filter/build.sh native (make setup does)"
        )
    env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR)}
    return subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip


@pytest.mark.parametrize("name", BOOTSTRAPS)
def test_envoy_bootstraps_validate(
    name: str, wasm_module: Path, tls_material: TlsMaterial, tmp_path: Path
) -> None:
    text = render((DEPLOY / "envoy" / name).read_text())
    text = text.replace("/etc/dnsguard/dnsguard_filter.wasm", str(wasm_module))
    for src, dst in (("/etc/dnsguard/tls/tls.crt", tls_material.server_cert),
                     ("/etc/dnsguard/tls/tls.key", tls_material.server_key),
                     ("/etc/dnsguard/tls/ca.crt", tls_material.ca)):  # fmt: skip
        text = text.replace(src, str(dst))
    doc = yaml.safe_load(text)
    plugins = [json.loads(f["typed_config"]["config"]["configuration"]["value"])
               for lst in doc["static_resources"]["listeners"] for chain in lst.get("filter_chains", [])
               for f in chain["filters"] + [h for g in chain["filters"] for h in g.get("typed_config", {}).get("http_filters", [])]
               if f["name"] in ("envoy.filters.network.wasm", "envoy.filters.http.wasm")]  # fmt: skip
    for cfg in plugins:
        check_filter_config(cfg)
        check_filter_attribution(doc["node"], cfg, name)
    # every bootstrap takes plain DNS over UDP through the module, and DNS
    # over TCP through the Wasm filter or the module's network filter
    modules = module_configs(doc)
    assert modules
    tcp_modules = module_configs(doc, MODULE_NETWORK_FILTER)
    assert plugins or tcp_modules
    by_port = {lst["address"]["socket_address"]["port_value"]: lst
               for lst in doc["static_resources"]["listeners"]}  # fmt: skip
    for cfg in modules + tcp_modules:
        check_module_config(cfg, by_port, name)
    path = tmp_path / name
    path.write_text(text)
    out = validate(path)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "OK" in log, log[-3000:]


def test_validation_runs_the_modules_own_config_check(tmp_path: Path) -> None:
    """Envoy's validate mode loads the module and hands it the configuration:
    one the module refuses (a token too short to be a secret) fails there."""
    doc = yaml.safe_load(render((DEPLOY / "envoy" / "sidecar.yaml").read_text()))
    doc["static_resources"]["listeners"] = [
        lst for lst in doc["static_resources"]["listeners"] if "listener_filters" in lst
    ]
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(doc))
    good = validate(path)
    assert good.returncode == 0, (good.stdout + good.stderr)[-3000:]
    module = doc["static_resources"]["listeners"][0]["listener_filters"][0]["typed_config"]
    cfg = json.loads(module["filter_config"]["value"])
    cfg["collector"]["token"] = "short"
    module["filter_config"]["value"] = json.dumps(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    bad = validate(path)
    assert bad.returncode != 0
    assert "collector.token" in bad.stdout + bad.stderr


def manifests(folder: str) -> list[dict]:
    docs = []
    for f in sorted((DEPLOY / folder).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def test_kubernetes_manifests_match_the_schemas() -> None:
    core = [d for d in manifests("k8s") if not d["apiVersion"].startswith("kafka.strimzi.io")]
    assert {d["kind"] for d in core} >= {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "StatefulSet",
        "Job",
    }
    for d in core:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    names = {d["metadata"]["name"] for d in core if d["kind"] == "Deployment"}
    assert names == {"dnsguard-collector", "dnsguard-worker", "dnsguard-feed", "dnsguard-publisher"}
    for d in core:
        if d["kind"] == "Deployment":
            (c,) = d["spec"]["template"]["spec"]["containers"]
            assert c["args"][0] in ("collector", "worker", "feed", "publish")
            assert all(
                "value" not in e
                or not any(w in e["name"] for w in ("TOKEN", "KEY", "PASSWORD"))
                or e["name"].endswith(("_FILE", "_DIR", "_USERNAME"))
                for e in c.get("env", [])
            )


def test_strimzi_resources_carry_what_dnsguard_relies_on() -> None:
    docs = manifests("k8s")
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    topics = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "KafkaTopic"}
    assert set(topics) == {
        "dnsguard.events",
        "dnsguard.alerts",
        "dnsguard.verdicts",
        "dnsguard.events.dlq",
    }
    assert topics["dnsguard.verdicts"]["config"]["cleanup.policy"] == "compact"
    worker = next(d for d in docs if d.get("metadata", {}).get("name") == "dnsguard-worker")
    assert worker["spec"]["replicas"] <= topics["dnsguard.events"]["partitions"]
    for d in docs:
        if d["kind"] in ("KafkaTopic", "KafkaNodePool"):
            assert d["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def test_kafka_clients_use_the_tls_listener_and_mount_its_ca() -> None:
    """The config map points Kafka clients at a TLS listener of the Strimzi cluster,
    and every Deployment whose service talks to Kafka mounts the CA file it names
    and authenticates as its own KafkaUser."""
    docs = manifests("k8s")
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dnsguard-config"
    )
    env = config["data"]
    port = int(env["DNSGUARD_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    tls_ports = {lst["port"] for lst in kafka["spec"]["kafka"]["listeners"] if lst["tls"]}
    assert port in tls_ports
    assert env["DNSGUARD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["DNSGUARD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    users = {d["metadata"]["name"] for d in docs if d["kind"] == "KafkaUser"}
    ca = Path(env["DNSGUARD_KAFKA_SSL_CAFILE"])
    ca_secret = f"{kafka['metadata']['name']}-cluster-ca-cert"  # what Strimzi creates
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        if c["args"][0] not in ("collector", "worker"):  # the Kafka clients
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = [m for m in c.get("volumeMounts", []) if Path(m["mountPath"]) == ca.parent]
        assert len(mounts) == 1, d["metadata"]["name"]
        assert volumes[mounts[0]["name"]]["secret"]["secretName"] == ca_secret
        assert ca.name == "ca.crt"  # the key Strimzi stores the certificate under
        cenv = {e["name"]: e for e in c["env"]}
        user = cenv["DNSGUARD_KAFKA_SASL_USERNAME"]["value"]
        assert user == d["metadata"]["name"]
        assert user in users
        # the password Strimzi's User Operator generates for that user
        ref = cenv["DNSGUARD_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (user, "password")


def test_workers_serve_their_web_port_to_the_pod_network() -> None:
    """Prometheus scrapes the worker's port, and workers forward table queries to
    each other: it must listen beyond loopback and advertise the pod's IP."""
    worker = next(d for d in manifests("k8s") if d["metadata"]["name"] == "dnsguard-worker")
    (c,) = worker["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["DNSGUARD_WORKER_WEB_BIND"]["value"] == "0.0.0.0"
    assert env["DNSGUARD_WORKER_WEB_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    port = int(env["DNSGUARD_WORKER_WEB_PORT"]["value"])
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    assert {p["containerPort"] for p in c["ports"]} == {port}


def test_istio_resources_configure_the_filter() -> None:
    docs = [yaml.safe_load(render(yaml.safe_dump(d))) for d in manifests("istio")]
    plugins = [d for d in docs if d["kind"] == "WasmPlugin"]
    assert {p["spec"]["type"] for p in plugins} == {"NETWORK", "HTTP"}
    for p in plugins:
        assert p["apiVersion"] == "extensions.istio.io/v1alpha1"
        assert p["spec"]["url"].startswith("oci://")
        check_filter_config(p["spec"]["pluginConfig"])
    (ef,) = [d for d in docs if d["kind"] == "EnvoyFilter"]
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "NETWORK_FILTER"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    check_filter_config(
        json.loads(patch["patch"]["value"]["typed_config"]["config"]["configuration"]["value"])
    )


def containers_of(d: dict) -> list[dict]:
    spec = d["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def test_every_workload_is_hardened() -> None:
    """Non-root, read-only root filesystem, no capabilities, no privilege
    escalation, the runtime seccomp profile, no service-account token, and
    requests and limits on every container; the policy Job has a deadline."""
    workloads = [d for d in manifests("k8s") if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert len(workloads) == 6
    for d in workloads:
        name = d["metadata"]["name"]
        pod = d["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in containers_of(d):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, kind)
    (job,) = [d for d in workloads if d["kind"] == "Job"]
    assert 0 < job["spec"]["activeDeadlineSeconds"] <= 3600
    ns = next(d for d in manifests("k8s") if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_redis_requires_an_acl_user_for_every_client() -> None:
    docs = manifests("k8s")
    (redis,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (c,) = redis["spec"]["template"]["spec"]["containers"]
    assert "--aclfile" in c["args"]
    acl = c["args"][c["args"].index("--aclfile") + 1]
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in c["volumeMounts"] if acl.startswith(m["mountPath"]))
    assert "secret" in volumes[mount["name"]]
    redis_clients = {
        "dnsguard-worker",
        "dnsguard-feed",
        "dnsguard-publisher",
        "dnsguard-policy-apply",
    }
    seen = set()
    for d in docs:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        (c,) = d["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c.get("env", [])}
        if d["metadata"]["name"] in redis_clients:
            seen.add(d["metadata"]["name"])
            assert env["DNSGUARD_REDIS_USERNAME"]["value"]
            assert "secretKeyRef" in env["DNSGUARD_REDIS_PASSWORD"]["valueFrom"]
    assert seen == redis_clients


def test_kafka_listeners_authenticate_and_users_get_only_their_topics() -> None:
    docs = manifests("k8s")
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    for lst in kafka["spec"]["kafka"]["listeners"]:
        assert lst["tls"] is True
        assert lst["authentication"]["type"] in ("scram-sha-512", "tls")
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["config"]["allow.everyone.if.no.acl.found"] is False
    acls = {
        d["metadata"]["name"]: {
            (a["resource"]["type"], a["resource"].get("name", ""), op)
            for a in d["spec"]["authorization"]["acls"]
            for op in a["operations"]
        }
        for d in docs
        if d["kind"] == "KafkaUser"
    }
    collector, worker = acls["dnsguard-collector"], acls["dnsguard-worker"]
    assert ("topic", "dnsguard.events", "Write") in collector
    assert not any(op == "Read" for _, _, op in collector)
    assert ("topic", "dnsguard.events", "Read") in worker
    assert ("topic", "dnsguard.events", "Write") not in worker
    assert {
        ("topic", "dnsguard.alerts", "Write"),
        ("topic", "dnsguard.verdicts", "Write"),
    } <= worker
    reader = acls["dnsguard-reader"]
    assert {op for t, _, op in reader if t == "topic"} == {"Read", "Describe"}
    assert all(name != "dnsguard.events" for _, name, _ in reader)


def test_network_policies_allow_only_the_data_path() -> None:
    """Default deny for every dnsguard pod, then: sidecars to the collector and
    the feed, the collector and workers to Kafka, workers, feed, publisher and
    the policy Job to Redis, Prometheus to the workers, and DNS."""
    docs = manifests("k8s")
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    deny = policies["dnsguard-default-deny"]
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "dnsguard"}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    for d in docs:  # every dnsguard pod is under the default deny
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/part-of"] == "dnsguard", d["metadata"]["name"]

    def selects(spec: dict, app: str) -> bool:
        sel = spec["podSelector"]
        if "matchLabels" in sel:
            return sel["matchLabels"].get("app.kubernetes.io/name") == app
        return any(app in e["values"] for e in sel.get("matchExpressions", []))

    def egress_ports(app: str) -> set[int]:
        return {p["port"] for s in policies.values() if selects(s, app)
                for rule in s.get("egress", []) for p in rule.get("ports", [])}  # fmt: skip

    def ingress_ports(app: str) -> set[int]:
        return {p["port"] for s in policies.values() if selects(s, app)
                for rule in s.get("ingress", []) for p in rule.get("ports", [])}  # fmt: skip

    assert egress_ports("dnsguard-collector") == {9093}
    assert egress_ports("dnsguard-worker") == {9093, 6379, 6066}
    assert egress_ports("dnsguard-feed") == {6379}
    assert egress_ports("dnsguard-publisher") == {6379}
    assert egress_ports("dnsguard-policy-apply") == {6379}
    assert ingress_ports("dnsguard-collector") == {8080}
    assert ingress_ports("dnsguard-feed") == {8090}
    assert ingress_ports("dnsguard-worker") == {6066}
    assert ingress_ports("dnsguard-redis") == {6379}
    assert ingress_ports("dnsguard-publisher") == set()
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    peers = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
             for lst in kafka["spec"]["kafka"]["listeners"] for p in lst["networkPolicyPeers"]}  # fmt: skip
    assert peers == {"dnsguard-collector", "dnsguard-worker"}


def test_only_the_feed_holds_the_signing_key() -> None:
    docs = manifests("k8s")
    holders = set()
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        spec = d["spec"]["template"]["spec"]
        for v in spec.get("volumes", []):
            items = v.get("secret", {}).get("items", [])
            if any(i["key"] == "feed-signing-key" for i in items):
                holders.add(d["metadata"]["name"])
            if v.get("secret", {}).get("secretName") == "dnsguard-secrets" and not items:
                holders.add(d["metadata"]["name"])  # the whole secret mounted
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("key") == "feed-signing-key":
                    holders.add(d["metadata"]["name"])
    assert holders == {"dnsguard-feed"}
    for d in manifests("istio"):
        assert "secret" not in json.dumps(d).replace("secrets", "")
