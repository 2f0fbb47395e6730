"""Envoy bootstrap configs carrying the dnsguard filter (rendered, not templated by hand).

``filter_bootstrap`` builds a bootstrap with a DNS-over-TCP listener (Wasm
network filter, then tcp_proxy to the resolver), optionally a DNS-over-UDP
listener (the native dynamic module ``libdnsguard_native.so`` as a UDP listener
filter, then udp_proxy), optionally a second DNS-over-TCP listener with the same
native module as its network filter, a DoH listener (Wasm HTTP filter, buffer filter,
router), and the collector cluster the filter ships events to. Used by the e2e tests, the benchmarks and the demo;
``deploy/envoy/`` holds the same shape for sidecars and egress gateways.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WASM_PATH = (
    REPO / "filter" / "target" / "wasm32-unknown-unknown" / "release" / "dnsguard_filter.wasm"
)

# The native module (UDP listener filter and network filter): Envoy loads
# lib<name>.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
NATIVE_MODULE_NAME = "dnsguard_native"
NATIVE_DIR = REPO / "filter" / "target" / "release"
NATIVE_PATH = NATIVE_DIR / f"lib{NATIVE_MODULE_NAME}.so"


# One VM id for every dnsguard plugin in an Envoy: they share one VM per
# thread, one shared-data namespace, and so one elected feed poller.
VM_ID = "dnsguard"


def _cluster(name: str, port: int, http2: bool = False, host: str = "127.0.0.1") -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return c


def wasm_filter(
    kind: str, name: str, root_id: str, configuration: str, wasm: Path, vm_id: str
) -> dict[str, Any]:
    """An Envoy Wasm filter (``kind``: network or http): plugin ``name`` and
    ``root_id`` of module ``wasm`` in VM ``vm_id``, given ``configuration``."""
    type_url = {
        "network": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
        "http": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
    }[kind]
    return {
        "name": f"envoy.filters.{kind}.wasm",
        "typed_config": {
            "@type": type_url,
            "config": {
                "name": name,
                "root_id": root_id,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "fail_open": False,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
            },
        },
    }


def _wasm(kind: str, config: dict[str, Any], wasm: Path, vm_id: str) -> dict[str, Any]:
    root_id = f"dnsguard_{config['mode']}"
    return wasm_filter(kind, "dnsguard", root_id, json.dumps(config), wasm, vm_id)


def listener(name: str, port: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """A loopback TCP listener running ``filters``."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": filters}],
    }


def udp_listener(
    name: str, port: int, module_config: dict[str, Any] | None, cluster: str = "upstream_dns"
) -> dict[str, Any]:
    """A loopback UDP listener proxying datagrams to ``cluster``; with
    ``module_config``, the dnsguard module sees each query first."""
    filters: list[dict[str, Any]] = []
    if module_config is not None:
        filters.append(
            {
                "name": "dnsguard",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.udp.dynamic_modules.v3.DynamicModuleUdpListenerFilter",
                    "dynamic_module_config": {"name": NATIVE_MODULE_NAME, "do_not_close": True},
                    "filter_name": "dnsguard",
                    "filter_config": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": json.dumps(module_config),
                    },
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.udp_listener.udp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig",
                "stat_prefix": f"{name}_proxy",
                "matcher": {
                    "on_no_match": {
                        "action": {
                            "name": "route",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route",
                                "cluster": cluster,
                            },
                        }
                    }
                },
            },
        }
    )
    return {
        "name": name,
        "address": {
            "socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": port}
        },
        "listener_filters": filters,
    }


def native_network_filter(
    module_config: dict[str, Any], module: str = NATIVE_MODULE_NAME
) -> dict[str, Any]:
    """The native module as a network filter (DNS over TCP or DoT), to put
    before ``tcp_proxy`` (``module``: another library under the same search
    path, such as the benchmark's empty one)."""
    return {
        "name": "dnsguard",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter",
            "dynamic_module_config": {"name": module, "do_not_close": True},
            "filter_name": "dnsguard",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": json.dumps(module_config),
            },
        },
    }


TCP_PROXY = {
    "name": "envoy.filters.network.tcp_proxy",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "dns_tcp",
        "cluster": "upstream_dns",
    },
}


@dataclass
class FilterPorts:
    admin: int
    dns_tcp: int
    upstream_dns: int
    collector: int
    doh: int | None = None
    upstream_doh: int | None = None
    plain_tcp: int | None = None  # a second DNS listener with tcp_proxy only (benchmark baseline)
    dot: int | None = None  # DNS over TLS, terminated by Envoy, then the same filter
    feed: int | None = None  # the policy feed server: with it, the filter enforces
    dns_udp: int | None = None  # DNS over UDP through the native module, then udp_proxy
    plain_udp: int | None = None  # a second UDP listener with udp_proxy only (benchmark baseline)
    native_tcp: int | None = None  # DNS over TCP through the native module's network filter
    native_dot: int | None = (
        None  # DoT terminated by Envoy, then the native module's network filter
    )


@dataclass
class FilterOptions:
    token: str = ""
    flush_interval_ms: int = 100
    batch_size: int = 500
    max_inflight: int = 4
    queue_max: int = 10_000
    query_timeout_ms: int = 2_000
    max_attempts: int = 3
    collector_timeout_ms: int = 1_000
    metadata: dict[str, str] = field(
        default_factory=lambda: {
            "NAMESPACE": "shop",
            "WORKLOAD_NAME": "web",
            "NAME": "web-7d9f",
            "SERVICE_ACCOUNT": "web-sa",
        }
    )
    node_id: str = "sidecar~10.1.0.11~web-7d9f.shop~shop.svc.cluster.local"
    # DoT: server certificate, key, and the CA that client certificates must chain to
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    concurrency: int = 2
    # policy feed (used when FilterPorts.feed is set): the Ed25519 public keys the
    # filter accepts, as (key id, base64 public key) pairs
    feed_keys: tuple[tuple[str, str], ...] = ()
    feed_token: str = ""
    feed_long_poll_ms: int = 20_000
    feed_poll_interval_ms: int = 1_000
    feed_max_bytes: int = 30 << 20
    sinkhole_a: str | None = None


def native_module_config(ports: FilterPorts, opts: FilterOptions) -> dict[str, Any]:
    """The native module's configuration (``filter/crates/native/src/config.rs``)
    for this bootstrap: the node identity, the collector and, with a feed, the
    keys it must verify."""
    md = opts.metadata
    config: dict[str, Any] = {
        "node": {
            "id": opts.node_id,
            "cluster": "web.shop",
            "namespace": md.get("NAMESPACE", ""),
            "workload": md.get("WORKLOAD_NAME", ""),
            "pod": md.get("NAME", ""),
            "service_account": md.get("SERVICE_ACCOUNT", ""),
        },
        "collector": {
            "address": f"127.0.0.1:{ports.collector}",
            "token": opts.token,
            "max_queue": opts.queue_max,
            "max_batch": opts.batch_size,
            "flush_ms": opts.flush_interval_ms,
            "timeout_ms": opts.collector_timeout_ms,
        },
    }
    if ports.feed is not None:
        config["feed"] = {
            "address": f"127.0.0.1:{ports.feed}",
            "token": opts.feed_token,
            "keys": [{"id": k, "public_key": v} for k, v in opts.feed_keys],
            "long_poll_ms": opts.feed_long_poll_ms,
            "poll_interval_ms": opts.feed_poll_interval_ms,
            "max_bytes": opts.feed_max_bytes,
        }
    if opts.sinkhole_a:
        config["sinkhole"] = {"a": opts.sinkhole_a}
    config["query_timeout_ms"] = opts.query_timeout_ms
    return config


def _dot_tls(opts: FilterOptions) -> dict[str, Any]:
    """Envoy's TLS for a DoT listener: the server certificate and, with a
    client CA, client certificates required."""
    if opts.tls_cert is None or opts.tls_key is None:
        raise ValueError("a DoT listener needs tls_cert and tls_key")
    tls: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(opts.tls_cert)},
                    "private_key": {"filename": str(opts.tls_key)},
                }
            ],
            "alpn_protocols": ["dot"],
        },
    }
    if opts.tls_client_ca is not None:
        tls["require_client_certificate"] = True
        tls["common_tls_context"]["validation_context"] = {
            "trusted_ca": {"filename": str(opts.tls_client_ca)}
        }
    return {"name": "envoy.transport_sockets.tls", "typed_config": tls}


def filter_bootstrap(
    ports: FilterPorts, opts: FilterOptions, wasm: Path = WASM_PATH
) -> dict[str, Any]:
    feed: dict[str, Any] = {}
    if ports.feed is not None:
        feed["feed"] = {
            "cluster": "dnsguard_feed",
            "token": opts.feed_token,
            "keys": [{"id": k, "public_key": v} for k, v in opts.feed_keys],
            "long_poll_ms": opts.feed_long_poll_ms,
            "poll_interval_ms": opts.feed_poll_interval_ms,
            "max_bytes": opts.feed_max_bytes,
        }
    if opts.sinkhole_a:
        feed["sinkhole"] = {"a": opts.sinkhole_a}

    def cfg(mode: str) -> dict[str, Any]:
        return {
            "mode": mode,
            "collector_cluster": "dnsguard_collector",
            "collector_authority": "dnsguard-collector",
            "token": opts.token,
            "batch_size": opts.batch_size,
            "max_inflight": opts.max_inflight,
            "flush_interval_ms": opts.flush_interval_ms,
            "queue_max": opts.queue_max,
            "query_timeout_ms": opts.query_timeout_ms,
            "max_attempts": opts.max_attempts,
            "collector_timeout_ms": opts.collector_timeout_ms,
            **feed,
        }

    tcp_proxy = TCP_PROXY
    listeners = [
        listener(
            "dns_tcp",
            ports.dns_tcp,
            [_wasm("network", cfg("tcp"), wasm, VM_ID), tcp_proxy],
        )
    ]
    if ports.plain_tcp is not None:
        listeners.append(listener("dns_plain", ports.plain_tcp, [tcp_proxy]))
    if ports.dns_udp is not None:
        listeners.append(udp_listener("dns_udp", ports.dns_udp, native_module_config(ports, opts)))
    if ports.native_tcp is not None:
        native = native_network_filter(native_module_config(ports, opts))
        listeners.append(listener("dns_tcp_native", ports.native_tcp, [native, tcp_proxy]))
    if ports.plain_udp is not None:
        listeners.append(udp_listener("dns_udp_plain", ports.plain_udp, None))
    tls_listeners = []
    if ports.dot is not None:
        tls_listeners.append(
            listener("dns_dot", ports.dot, [_wasm("network", cfg("tcp"), wasm, VM_ID), tcp_proxy])
        )
    if ports.native_dot is not None:
        native = native_network_filter(native_module_config(ports, opts))
        tls_listeners.append(listener("dns_dot_native", ports.native_dot, [native, tcp_proxy]))
    for dot in tls_listeners:
        dot["filter_chains"][0]["transport_socket"] = _dot_tls(opts)
        listeners.append(dot)
    clusters = [
        _cluster("upstream_dns", ports.upstream_dns),
        _cluster("dnsguard_collector", ports.collector),
    ]
    if ports.feed is not None:
        clusters.append(_cluster("dnsguard_feed", ports.feed))
    if ports.doh is not None and ports.upstream_doh is not None:
        hcm = {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "doh",
                "route_config": {
                    "virtual_hosts": [
                        {
                            "name": "doh",
                            "domains": ["*"],
                            "routes": [
                                {
                                    "match": {"prefix": "/dns-query"},
                                    "route": {"cluster": "upstream_doh"},
                                }
                            ],
                        }
                    ]
                },
                "http_filters": [
                    _wasm("http", cfg("doh"), wasm, VM_ID),
                    {
                        "name": "envoy.filters.http.buffer",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                            "max_request_bytes": 65535,
                        },
                    },
                    {
                        "name": "envoy.filters.http.router",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                        },
                    },
                ],
            },
        }
        listeners.append(listener("doh", ports.doh, [hcm]))
        clusters.append(_cluster("upstream_doh", ports.upstream_doh))
    return {
        "node": {"id": opts.node_id, "cluster": "web.shop", "metadata": opts.metadata},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports.admin}}
        },
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
