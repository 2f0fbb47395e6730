//! The module's configuration: the `filter_config` string of the UDP listener
//! filter or the network filter (JSON), validated before the module starts
//! anything.
//!
//! ```json
//! {"node": {"id": "...", "cluster": "...", "namespace": "shop", "workload": "web",
//!           "pod": "web-1", "service_account": "web"},
//!  "collector": {"address": "127.0.0.1:18080", "path": "/v1/events", "token": "..."},
//!  "feed": {"address": "127.0.0.1:18090", "path": "/v1/policy", "token": "...",
//!           "keys": [{"id": "k1", "public_key": "<base64url>"}]},
//!  "sinkhole": {"a": "192.0.2.53"}}
//! ```
//!
//! Without `feed` the module only observes. Without `collector` it ships no
//! events (enforcement still works). Addresses are `host:port` reached over
//! plain HTTP/1.1 (in a mesh, the sidecar's mTLS carries it).

use std::net::{Ipv4Addr, Ipv6Addr};

use dnspolicy::PublicKey;
use dnswire::Sinkhole;
use serde::Deserialize;

use dnsflow::event::Node;

const MIN_TOKEN: usize = 16;

fn d_events_path() -> String {
    "/v1/events".into()
}
fn d_feed_path() -> String {
    "/v1/policy".into()
}
fn d_max_queue() -> usize {
    10_000
}
fn d_max_batch() -> usize {
    2000
}
fn d_flush_ms() -> u64 {
    200
}
fn d_timeout_ms() -> u64 {
    2_000
}
fn d_long_poll_ms() -> u64 {
    20_000
}
fn d_poll_interval_ms() -> u64 {
    1_000
}
fn d_max_bytes() -> usize {
    30 * 1024 * 1024
}
fn d_max_rules() -> usize {
    2_000_000
}
fn d_query_timeout_ms() -> u64 {
    5_000
}
fn d_sinkhole_ttl() -> u32 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub workload: String,
    #[serde(default)]
    pub pod: String,
    #[serde(default)]
    pub service_account: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    pub address: String,
    #[serde(default = "d_events_path")]
    pub path: String,
    pub token: String,
    /// Events waiting to be shipped at most; past it the oldest are dropped (counted).
    #[serde(default = "d_max_queue")]
    pub max_queue: usize,
    #[serde(default = "d_max_batch")]
    pub max_batch: usize,
    #[serde(default = "d_flush_ms")]
    pub flush_ms: u64,
    #[serde(default = "d_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub id: String,
    pub public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub address: String,
    #[serde(default = "d_feed_path")]
    pub path: String,
    pub token: String,
    pub keys: Vec<KeyConfig>,
    /// 0: plain polling every `poll_interval_ms`.
    #[serde(default = "d_long_poll_ms")]
    pub long_poll_ms: u64,
    #[serde(default = "d_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "d_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "d_max_bytes")]
    pub max_bytes: usize,
    #[serde(default = "d_max_rules")]
    pub max_rules: usize,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinkholeConfig {
    pub a: Option<Ipv4Addr>,
    pub aaaa: Option<Ipv6Addr>,
    #[serde(default = "d_sinkhole_ttl")]
    pub ttl: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub collector: Option<CollectorConfig>,
    pub feed: Option<FeedConfig>,
    #[serde(default)]
    pub sinkhole: SinkholeConfig,
    /// DNS over TCP: a forwarded query with no response after this long is
    /// reported as unanswered.
    #[serde(default = "d_query_timeout_ms")]
    pub query_timeout_ms: u64,
}

fn check_address(what: &str, address: &str) -> Result<(), String> {
    let (host, port) = address.rsplit_once(':').ok_or(format!("{what}.address must be host:port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{what}.address must be host:port, got {address:?}"));
    }
    Ok(())
}

fn check_path(what: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(format!("{what}.path must start with / and be printable ASCII"));
    }
    Ok(())
}

fn check_token(what: &str, token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN || token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(format!("{what}.token must be at least {MIN_TOKEN} printable characters"));
    }
    Ok(())
}

impl Config {
    pub fn parse(text: &[u8]) -> Result<Config, String> {
        let c: Config = serde_json::from_slice(text).map_err(|e| format!("configuration: {e}"))?;
        let n = &c.node;
        if !n.namespace.is_empty() && !dnspolicy::valid_namespace(&n.namespace) {
            return Err(format!("node.namespace {:?} is not a Kubernetes namespace name", n.namespace));
        }
        for (what, v) in [("workload", &n.workload), ("pod", &n.pod), ("service_account", &n.service_account)] {
            if !v.is_empty() && !dnspolicy::valid_object_name(v) {
                return Err(format!("node.{what} {v:?} is not a Kubernetes object name"));
            }
        }
        if let Some(col) = &c.collector {
            check_address("collector", &col.address)?;
            check_path("collector", &col.path)?;
            check_token("collector", &col.token)?;
            if col.max_queue == 0 || col.max_batch == 0 || col.max_batch > 10_000 {
                return Err("collector.max_queue must be positive and max_batch in 1..=10000 (the collector's limit of events per batch)".into());
            }
        }
        if let Some(feed) = &c.feed {
            check_address("feed", &feed.address)?;
            check_path("feed", &feed.path)?;
            check_token("feed", &feed.token)?;
            if feed.keys.is_empty() {
                return Err("feed.keys: at least one public key is required".into());
            }
            c.public_keys()?;
        }
        Ok(c)
    }

    pub fn public_keys(&self) -> Result<Vec<PublicKey>, String> {
        let Some(feed) = &self.feed else { return Ok(Vec::new()) };
        feed.keys.iter().map(|k| PublicKey::parse(&k.id, &k.public_key).map_err(|e| format!("feed.keys: {e}"))).collect()
    }

    pub fn node(&self) -> Node {
        let n = &self.node;
        Node {
            id: n.id.clone(),
            cluster: n.cluster.clone(),
            namespace: n.namespace.clone(),
            workload: n.workload.clone(),
            pod: n.pod.clone(),
            service_account: n.service_account.clone(),
        }
    }

    pub fn sinkhole(&self) -> Sinkhole {
        let s = &self.sinkhole;
        Sinkhole { a: s.a.map(|a| a.octets()), aaaa: s.aaaa.map(|a| a.octets()), ttl: s.ttl }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn minimal_and_full_configurations_parse() {
        let c = Config::parse(br#"{"node":{"namespace":"shop","pod":"web-1"}}"#);
        assert!(c.is_ok_and(|c| c.collector.is_none() && c.feed.is_none()));
        let full = format!(
            r#"{{"node":{{"namespace":"shop"}},"collector":{{"address":"127.0.0.1:18080","token":"0123456789abcdef"}},
               "feed":{{"address":"feed:18090","token":"0123456789abcdef","keys":[{{"id":"k1","public_key":"{KEY}"}}]}},
               "sinkhole":{{"a":"192.0.2.1"}}}}"#
        );
        let c = Config::parse(full.as_bytes());
        assert!(c.is_ok_and(|c| c.sinkhole().a == Some([192, 0, 2, 1]) && c.public_keys().is_ok_and(|k| k.len() == 1)));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_field() {
        for (text, needle) in [
            (r#"{"node":{"namespace":"Shop"}}"#, "node.namespace"),
            (r#"{"node":{},"collector":{"address":"nohost","token":"0123456789abcdef"}}"#, "collector.address"),
            (r#"{"node":{},"collector":{"address":"h:1","token":"short"}}"#, "collector.token"),
            (r#"{"node":{},"feed":{"address":"h:1","token":"0123456789abcdef","keys":[]}}"#, "feed.keys"),
            (r#"{"node":{},"feed":{"address":"h:1","token":"0123456789abcdef","keys":[{"id":"k1","public_key":"x"}]}}"#, "feed.keys"),
            (r#"{"node":{},"extra":1}"#, "unknown field"),
            ("not json", "configuration"),
        ] {
            let err = Config::parse(text.as_bytes()).err().unwrap_or_default();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
