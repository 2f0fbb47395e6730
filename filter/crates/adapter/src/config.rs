//! Plugin configuration: JSON, parsed and validated once in `on_configure`.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Network filter: DNS over TCP, or DoT once Envoy has terminated TLS.
    Tcp,
    /// HTTP filter: DNS over HTTPS (RFC 8484).
    Doh,
}

fn default_path() -> String {
    "/v1/events".to_string()
}
fn default_authority() -> String {
    "dnsguard-collector".to_string()
}
fn d_batch() -> usize {
    500
}
fn d_flush() -> u64 {
    100
}
fn d_inflight() -> usize {
    4
}
fn d_queue() -> usize {
    10_000
}
fn d_retries() -> u32 {
    3
}
fn d_timeout() -> u64 {
    2_000
}
fn d_query_timeout() -> u64 {
    5_000
}
fn d_pending() -> usize {
    1_024
}
fn d_max_answers() -> usize {
    32
}

/// Node metadata keys read for attribution (Istio's names by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataKeys {
    #[serde(default = "MetadataKeys::ns")]
    pub namespace: String,
    #[serde(default = "MetadataKeys::workload")]
    pub workload: String,
    #[serde(default = "MetadataKeys::pod")]
    pub pod: String,
    #[serde(default = "MetadataKeys::sa")]
    pub service_account: String,
}

impl MetadataKeys {
    fn ns() -> String {
        "NAMESPACE".into()
    }
    fn workload() -> String {
        "WORKLOAD_NAME".into()
    }
    fn pod() -> String {
        "NAME".into()
    }
    fn sa() -> String {
        "SERVICE_ACCOUNT".into()
    }
}

impl Default for MetadataKeys {
    fn default() -> Self {
        MetadataKeys { namespace: Self::ns(), workload: Self::workload(), pod: Self::pod(), service_account: Self::sa() }
    }
}

fn d_feed_authority() -> String {
    "dnsguard-feed".to_string()
}
fn d_feed_path() -> String {
    "/v1/policy".to_string()
}
fn d_poll() -> u64 {
    1_000
}
fn d_long_poll() -> u64 {
    20_000
}
/// Envoy 1.40 resets a dispatched call whose response grows to ~32 MB
/// (measured: 30.6 MB arrives, 34 MB does not), so feeds stay below that.
fn d_feed_bytes() -> usize {
    30 << 20
}
fn d_rules() -> usize {
    2_000_000
}
fn d_sinkhole_ttl() -> u32 {
    60
}

/// One HMAC key the feed may be signed with (two during a rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedKey {
    pub id: String,
    pub secret: String,
}

/// Where the policy comes from. With a feed configured the filter enforces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Envoy cluster of the feed server.
    pub cluster: String,
    #[serde(default = "d_feed_authority")]
    pub authority: String,
    #[serde(default = "d_feed_path")]
    pub path: String,
    /// Bearer token for the feed server.
    #[serde(default)]
    pub token: String,
    pub keys: Vec<FeedKey>,
    /// Pause between polls after an error, or between polls when long polling is off.
    #[serde(default = "d_poll")]
    pub poll_interval_ms: u64,
    /// How long the feed server may hold a poll open waiting for a change (0: plain polling).
    #[serde(default = "d_long_poll")]
    pub long_poll_ms: u64,
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// Feed bodies larger than this are rejected.
    #[serde(default = "d_feed_bytes")]
    pub max_bytes: usize,
    /// Policies with more rules than this are rejected.
    #[serde(default = "d_rules")]
    pub max_rules: usize,
}

/// The answer for the `sinkhole` action.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkholeConfig {
    #[serde(default)]
    pub a: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    pub aaaa: Option<std::net::Ipv6Addr>,
    #[serde(default = "d_sinkhole_ttl")]
    pub ttl: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    /// Envoy cluster of the collector; events are POSTed there in batches.
    pub collector_cluster: String,
    #[serde(default = "default_authority")]
    pub collector_authority: String,
    #[serde(default = "default_path")]
    pub collector_path: String,
    /// Bearer token for the collector (empty: no Authorization header).
    #[serde(default)]
    pub token: String,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_flush")]
    pub flush_interval_ms: u64,
    /// Batches awaiting the collector's answer per VM at most.
    #[serde(default = "d_inflight")]
    pub max_inflight: usize,
    /// Events held per VM at most; beyond it the oldest are dropped and counted.
    #[serde(default = "d_queue")]
    pub queue_max: usize,
    /// Attempts per batch before it is dropped and counted.
    #[serde(default = "d_retries")]
    pub max_attempts: u32,
    #[serde(default = "d_timeout")]
    pub collector_timeout_ms: u64,
    /// An unanswered query becomes an event after this long.
    #[serde(default = "d_query_timeout")]
    pub query_timeout_ms: u64,
    /// Queries awaiting an answer per VM at most.
    #[serde(default = "d_pending")]
    pub max_pending: usize,
    #[serde(default = "d_max_answers")]
    pub max_answers: usize,
    #[serde(default)]
    pub metadata_keys: MetadataKeys,
    #[serde(default)]
    pub feed: Option<FeedConfig>,
    #[serde(default)]
    pub sinkhole: SinkholeConfig,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let cfg: Config = serde_json::from_slice(bytes).map_err(|e| format!("invalid dnsguard config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.collector_cluster.is_empty() {
            return Err("collector_cluster must not be empty".into());
        }
        if !self.collector_path.starts_with('/') {
            return Err(format!("collector_path must start with '/', got {:?}", self.collector_path));
        }
        if self.batch_size == 0 || self.batch_size > self.queue_max {
            return Err(format!("batch_size must be in 1..=queue_max ({}), got {}", self.queue_max, self.batch_size));
        }
        if self.queue_max > 1_000_000 {
            return Err("queue_max must be <= 1000000".into());
        }
        if self.flush_interval_ms < 10 || self.flush_interval_ms > 60_000 {
            return Err("flush_interval_ms must be in 10..=60000".into());
        }
        if self.max_inflight == 0 || self.max_inflight > 64 {
            return Err("max_inflight must be in 1..=64".into());
        }
        if self.max_attempts == 0 || self.max_attempts > 10 {
            return Err("max_attempts must be in 1..=10".into());
        }
        if self.max_pending == 0 || self.max_pending > 1_000_000 {
            return Err("max_pending must be in 1..=1000000".into());
        }
        if let Some(f) = &self.feed {
            if f.cluster.is_empty() || !f.path.starts_with('/') {
                return Err("feed.cluster must not be empty and feed.path must start with '/'".into());
            }
            if f.keys.is_empty() || f.keys.len() > 2 || f.keys.iter().any(|k| k.id.is_empty() || k.secret.len() < 16) {
                return Err("feed.keys must hold one or two keys, each with an id and a secret of >= 16 bytes".into());
            }
            if f.poll_interval_ms < 50 || f.long_poll_ms > 300_000 {
                return Err("feed.poll_interval_ms must be >= 50 and feed.long_poll_ms <= 300000".into());
            }
            if f.max_bytes == 0 || f.max_rules == 0 {
                return Err("feed.max_bytes and feed.max_rules must be > 0".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(br#"{"mode":"tcp","collector_cluster":"collector"}"#).unwrap();
        assert_eq!(c.mode, Mode::Tcp);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.metadata_keys.namespace, "NAMESPACE");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        assert!(Config::parse(br#"{"mode":"tcp","collector_cluster":"c","batchsize":3}"#).unwrap_err().contains("unknown field"));
        assert!(Config::parse(br#"{"mode":"udp","collector_cluster":"c"}"#).is_err());
        assert!(Config::parse(br#"{"mode":"tcp","collector_cluster":"c","batch_size":0}"#).unwrap_err().contains("batch_size"));
        assert!(Config::parse(br#"{"mode":"tcp","collector_cluster":""}"#).is_err());
        assert!(Config::parse(b"not json").is_err());
    }

    #[test]
    fn feed_and_sinkhole_are_validated() {
        let base = r#""mode":"tcp","collector_cluster":"c""#;
        let ok = format!(r#"{{{base},"feed":{{"cluster":"feed","keys":[{{"id":"k1","secret":"0123456789abcdef"}}]}},"sinkhole":{{"a":"192.0.2.1"}}}}"#);
        let c = Config::parse(ok.as_bytes()).unwrap();
        assert_eq!(c.feed.as_ref().unwrap().long_poll_ms, 20_000);
        assert_eq!(c.sinkhole.a, Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        let short = format!(r#"{{{base},"feed":{{"cluster":"feed","keys":[{{"id":"k1","secret":"short"}}]}}}}"#);
        assert!(Config::parse(short.as_bytes()).unwrap_err().contains("feed.keys"));
        let nokeys = format!(r#"{{{base},"feed":{{"cluster":"feed","keys":[]}}}}"#);
        assert!(Config::parse(nokeys.as_bytes()).is_err());
        let badip = format!(r#"{{{base},"sinkhole":{{"a":"999.1.1.1"}}}}"#);
        assert!(Config::parse(badip.as_bytes()).is_err());
    }
}
