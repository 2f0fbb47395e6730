//! Who sent a query: Envoy node metadata, the downstream address, the TLS peer.

use proxy_wasm::traits::Context;

use crate::config::MetadataKeys;
use crate::event::{Client, Node};

fn string_property(ctx: &dyn Context, path: Vec<&str>) -> String {
    ctx.get_property(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// A node attribute: Envoy >= 1.28 serves it as ``xds.node.*``, older ones as ``node.*``.
fn node_property(ctx: &dyn Context, rest: &[&str]) -> String {
    let mut path = vec!["xds", "node"];
    path.extend_from_slice(rest);
    let value = string_property(ctx, path);
    if !value.is_empty() {
        return value;
    }
    let mut legacy = vec!["node"];
    legacy.extend_from_slice(rest);
    string_property(ctx, legacy)
}

pub fn node(ctx: &dyn Context, keys: &MetadataKeys) -> Node {
    Node {
        id: node_property(ctx, &["id"]),
        cluster: node_property(ctx, &["cluster"]),
        namespace: node_property(ctx, &["metadata", &keys.namespace]),
        workload: node_property(ctx, &["metadata", &keys.workload]),
        pod: node_property(ctx, &["metadata", &keys.pod]),
        service_account: node_property(ctx, &["metadata", &keys.service_account]),
    }
}

/// Splits ``1.2.3.4:5353`` or ``[2001:db8::1]:5353``.
pub fn split_address(addr: &str) -> (String, u16) {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((ip, port)) = rest.split_once("]:") {
            return (ip.to_string(), port.parse().unwrap_or(0));
        }
    }
    match addr.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') => (ip.to_string(), port.parse().unwrap_or(0)),
        _ => (addr.to_string(), 0),
    }
}

/// The client of this connection, and whether the connection is TLS.
/// Property reads cost host calls, so peer certificates are only asked for on TLS.
/// Policy scopes use the TLS peer's SPIFFE namespace and service account (an
/// egress gateway serving many workloads), else the node's namespace and
/// workload (a sidecar serving one).
pub fn client(ctx: &dyn Context) -> (Client, bool) {
    let (ip, port) = split_address(&string_property(ctx, vec!["source", "address"]));
    let tls = !string_property(ctx, vec!["connection", "tls_version"]).is_empty();
    let peer = if tls {
        let uri = string_property(ctx, vec!["connection", "uri_san_peer_certificate"]);
        if uri.is_empty() {
            Some(string_property(ctx, vec!["connection", "subject_peer_certificate"])).filter(|s| !s.is_empty())
        } else {
            Some(uri)
        }
    } else {
        None
    };
    let (namespace, workload) = match peer.as_deref().and_then(dnsflow::peer_scope) {
        Some((ns, sa)) => (ns.to_string(), sa.to_string()),
        None => crate::state::with(|vm| (vm.node.namespace.clone(), vm.node.workload.clone())),
    };
    (Client::new(ip, port, peer, namespace, workload), tls)
}

#[cfg(test)]
mod tests {
    use super::split_address;

    #[test]
    fn splits_v4_and_v6() {
        assert_eq!(split_address("10.0.0.1:5353"), ("10.0.0.1".to_string(), 5353));
        assert_eq!(split_address("[2001:db8::1]:53"), ("2001:db8::1".to_string(), 53));
        assert_eq!(split_address("garbage"), ("garbage".to_string(), 0));
    }
}
