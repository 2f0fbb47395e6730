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

/// One Ed25519 public key the feed may be signed with (two during a
/// rotation). Only the feed server holds the private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedKey {
    pub id: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
}

/// Shortest bearer token accepted: a shorter one is a placeholder, not a secret.
pub const MIN_TOKEN_LEN: usize = 16;

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
    /// Bearer token for the feed server (required).
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
    /// Bearer token for the collector (required: the collector refuses
    /// requests without one).
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

impl FeedConfig {
    /// The accepted public keys, parsed.
    pub fn public_keys(&self) -> Result<Vec<dnspolicy::PublicKey>, String> {
        self.keys.iter().map(|k| dnspolicy::PublicKey::parse(&k.id, &k.public_key)).collect()
    }
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
        if self.token.len() < MIN_TOKEN_LEN {
            return Err(format!("token: the collector's bearer token is required ({MIN_TOKEN_LEN} characters or more)"));
        }
        if !self.collector_path.starts_with('/') {
            return Err(format!("collector_path must start with '/', got {:?}", self.collector_path));
        }
        if self.batch_size > 10_000 {
            return Err(format!("batch_size must be <= 10000 (the collector's limit of events per batch), got {}", self.batch_size));
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
            if f.keys.is_empty() || f.keys.len() > 2 {
                return Err("feed.keys must hold one or two Ed25519 public keys ({\"id\", \"public_key\"})".into());
            }
            f.public_keys().map_err(|e| format!("feed.keys: {e}"))?;
            if f.token.len() < MIN_TOKEN_LEN {
                return Err(format!("feed.token: the feed's bearer token is required ({MIN_TOKEN_LEN} characters or more)"));
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

    const TOKEN: &str = r#""token":"0123456789abcdef""#;
    // the Ed25519 public key of the seed [1; 32]
    const PUBLIC: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(format!(r#"{{"mode":"tcp","collector_cluster":"collector",{TOKEN}}}"#).as_bytes()).unwrap();
        assert_eq!(c.mode, Mode::Tcp);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.metadata_keys.namespace, "NAMESPACE");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        let parse = |extra: &str| Config::parse(format!(r#"{{"mode":"tcp","collector_cluster":"c",{TOKEN}{extra}}}"#).as_bytes());
        assert!(parse(r#","batchsize":3"#).unwrap_err().contains("unknown field"));
        assert!(Config::parse(format!(r#"{{"mode":"udp","collector_cluster":"c",{TOKEN}}}"#).as_bytes()).is_err());
        assert!(parse(r#","batch_size":0"#).unwrap_err().contains("batch_size"));
        assert!(Config::parse(format!(r#"{{"mode":"tcp","collector_cluster":"",{TOKEN}}}"#).as_bytes()).is_err());
        assert!(Config::parse(b"not json").is_err());
        // auth is on by default: no token, or a placeholder, fails the plugin start
        assert!(Config::parse(br#"{"mode":"tcp","collector_cluster":"c"}"#).unwrap_err().contains("token"));
        assert!(Config::parse(br#"{"mode":"tcp","collector_cluster":"c","token":"short"}"#).unwrap_err().contains("token"));
    }

    #[test]
    fn feed_and_sinkhole_are_validated() {
        let base = format!(r#""mode":"tcp","collector_cluster":"c",{TOKEN}"#);
        let feed = |keys: &str| format!(r#"{{{base},"feed":{{"cluster":"feed",{TOKEN},"keys":[{keys}]}}}}"#);
        let ok = format!(r#"{{{base},"feed":{{"cluster":"feed",{TOKEN},"keys":[{{"id":"k1","public_key":"{PUBLIC}"}}]}},"sinkhole":{{"a":"192.0.2.1"}}}}"#);
        let c = Config::parse(ok.as_bytes()).unwrap();
        assert_eq!(c.feed.as_ref().unwrap().long_poll_ms, 20_000);
        assert_eq!(c.feed.as_ref().unwrap().public_keys().unwrap().len(), 1);
        assert_eq!(c.sinkhole.a, Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        assert!(Config::parse(feed(r#"{"id":"k1","public_key":"c2hvcnQ="}"#).as_bytes()).unwrap_err().contains("feed.keys"));
        assert!(Config::parse(feed(r#"{"id":"k1","secret":"0123456789abcdef0123"}"#).as_bytes()).unwrap_err().contains("unknown field"));
        assert!(Config::parse(feed("").as_bytes()).is_err());
        let no_token = format!(r#"{{{base},"feed":{{"cluster":"feed","keys":[{{"id":"k1","public_key":"{PUBLIC}"}}]}}}}"#);
        assert!(Config::parse(no_token.as_bytes()).is_err());
        let badip = format!(r#"{{{base},"sinkhole":{{"a":"999.1.1.1"}}}}"#);
        assert!(Config::parse(badip.as_bytes()).is_err());
    }
}
