//! The module's work, free of the FFI: what a datagram gets (forwarded,
//! answered, or swallowed), the event it becomes, and the two background
//! threads that ship events and poll the policy feed. Everything here is
//! tested with `cargo test`; `ffi.rs` only translates Envoy's calls.
//!
//! The DNS path never waits: a worker thread reads the current policy through
//! an `ArcSwap` (no lock), pushes what its event needs (the query taken out
//! of its parse, the peer, the time, the decision) into a bounded lock-free
//! queue (the oldest is dropped and counted when it is full), and returns. The
//! shipping thread turns those into v2 batches: the JSON is built off the DNS
//! path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use dnsflow::event::{BatchBuilder, Client, Event, FastMap, QueryInfo, ResponseInfo};
use dnsflow::{accept_feed, decide_query, FeedOutcome, QueryOutcome};
use dnspolicy::{Policy, PublicKey};
use dnswire::{parse_message, Message, Sinkhole};

use crate::config::Config;
use crate::http;

/// Counters the module keeps (Envoy counters of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Queries,
    Blocked,
    Shadowed,
    BlockedDropped,
    ParseErrors,
    EventsSent,
    EventsDropped,
    FeedUpdates,
    FeedRejected,
    FeedErrors,
    FeedEntriesSkipped,
}

/// Gauges the module keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    FeedVersion,
    FeedAgeSeconds,
    PolicyRules,
    EventsQueued,
}

impl Stat {
    pub const ALL: [Stat; 11] = [
        Stat::Queries,
        Stat::Blocked,
        Stat::Shadowed,
        Stat::BlockedDropped,
        Stat::ParseErrors,
        Stat::EventsSent,
        Stat::EventsDropped,
        Stat::FeedUpdates,
        Stat::FeedRejected,
        Stat::FeedErrors,
        Stat::FeedEntriesSkipped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stat::Queries => "queries",
            Stat::Blocked => "blocked",
            Stat::Shadowed => "shadowed",
            Stat::BlockedDropped => "blocked_dropped",
            Stat::ParseErrors => "parse_errors",
            Stat::EventsSent => "events_sent",
            Stat::EventsDropped => "events_dropped",
            Stat::FeedUpdates => "feed_updates",
            Stat::FeedRejected => "feed_rejected",
            Stat::FeedErrors => "feed_errors",
            Stat::FeedEntriesSkipped => "feed_entries_skipped",
        }
    }
}

impl Gauge {
    pub const ALL: [Gauge; 4] = [Gauge::FeedVersion, Gauge::FeedAgeSeconds, Gauge::PolicyRules, Gauge::EventsQueued];

    pub fn name(self) -> &'static str {
        match self {
            Gauge::FeedVersion => "feed_version",
            Gauge::FeedAgeSeconds => "feed_age_s",
            Gauge::PolicyRules => "policy_rules",
            Gauge::EventsQueued => "events_queued",
        }
    }
}

/// Where the module's counters and gauges go: Envoy's stats in production,
/// plain atomics in tests. Called from worker and module threads alike.
pub trait StatsSink: Send + Sync {
    fn count(&self, stat: Stat, n: u64);
    fn gauge(&self, gauge: Gauge, value: u64);
}

/// What the listener does with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// On to `udp_proxy` and the resolver, untouched.
    Pass,
    /// Answered by the module with these bytes; the resolver never sees it.
    Answer(Vec<u8>),
    /// Blocked, and no answer could be built: dropped (the client retries or times out).
    Swallow,
}

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Bytes kept inline up to `N` (no allocation on the DNS path for the
/// common case), on the heap beyond.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Held<const N: usize> {
    Inline { len: u16, buf: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> Held<N> {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        if bytes.len() <= N {
            let mut buf = [0u8; N];
            buf[..bytes.len()].copy_from_slice(bytes);
            Held::Inline { len: bytes.len() as u16, buf }
        } else {
            Held::Heap(bytes.into())
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Held::Inline { len, buf } => &buf[..usize::from(*len)],
            Held::Heap(b) => b,
        }
    }
}

/// A query as the worker thread saw it, for the shipping thread to render.
/// Building one allocates nothing on UDP (the module's own answers aside):
/// the query's name moves out of the parse the DNS path made anyway, and a
/// textual peer address of up to 48 bytes is held inline. A response's bytes
/// are parsed by the shipping thread, not the DNS path.
pub(crate) struct Seen {
    pub(crate) ts_micros: u64,
    pub(crate) peer_ip: Held<48>,
    pub(crate) peer_port: u16,
    /// The TLS peer's identity (DoT with a client certificate).
    pub(crate) peer: Option<Arc<str>>,
    pub(crate) transport: &'static str,
    pub(crate) query: QueryInfo,
    /// The response's bytes: the module's own answer, or the resolver's (TCP).
    pub(crate) response: Option<Vec<u8>>,
    /// Whether this path sees responses at all (TCP does, UDP does not).
    pub(crate) response_observed: bool,
    pub(crate) latency_us: Option<u64>,
    pub(crate) action: &'static str,
    pub(crate) policy_version: u64,
}

pub struct Module {
    config: Config,
    node_json: String,
    sinkhole: Sinkhole,
    keys: Vec<PublicKey>,
    policy: ArcSwap<Policy>,
    events: ArrayQueue<Seen>,
    stats: Box<dyn StatsSink>,
    feed_last_ok_ms: AtomicU64,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Module {
    pub fn new(config: Config, stats: Box<dyn StatsSink>) -> Result<Module, String> {
        let keys = config.public_keys()?;
        let node_json = serde_json::to_string(&config.node()).map_err(|e| e.to_string())?;
        let capacity = config.collector.as_ref().map_or(1, |c| c.max_queue);
        Ok(Module {
            sinkhole: config.sinkhole(),
            keys,
            node_json,
            policy: ArcSwap::from_pointee(Policy::default()),
            events: ArrayQueue::new(capacity),
            stats,
            feed_last_ok_ms: AtomicU64::new(now_micros() / 1_000),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            config,
        })
    }

    /// The policy version in force.
    pub fn policy_version(&self) -> u64 {
        self.policy.load().version
    }

    /// One datagram from `peer_ip`:`peer_port` at `now_us`. Never fails: a
    /// datagram that is not a DNS query passes through and is counted.
    pub fn on_datagram(&self, data: &[u8], peer_ip: &str, peer_port: u16, now_us: u64) -> Reply {
        let msg = match parse_message(data) {
            Ok(m) if !m.header.qr() && !m.questions.is_empty() => m,
            _ => {
                self.stats.count(Stat::ParseErrors, 1);
                return Reply::Pass;
            }
        };
        let (outcome, policy_version) = self.decide(data, &msg, now_us, None);
        let action = outcome.event_action();
        let reply = match outcome {
            QueryOutcome::Forward | QueryOutcome::Shadow => Reply::Pass,
            QueryOutcome::Answer(bytes) => Reply::Answer(bytes),
            QueryOutcome::Drop => Reply::Swallow,
        };
        if self.ships() {
            let Some(query) = QueryInfo::take_from(msg) else { return reply };
            self.push(Seen {
                ts_micros: now_us,
                peer_ip: Held::of(peer_ip.as_bytes()),
                peer_port,
                peer: None,
                transport: "udp",
                query,
                response: match &reply {
                    Reply::Answer(bytes) => Some(bytes.clone()),
                    _ => None,
                },
                // a forwarded query's response goes from udp_proxy to the client unseen
                response_observed: false,
                latency_us: None,
                action,
                policy_version,
            });
        }
        reply
    }

    /// The policy's decision for a parsed query (observe only without a
    /// feed), counted; with the policy version it was made under. Scopes are
    /// the node's namespace and workload, or `scope` (a TLS peer's SPIFFE
    /// namespace and service account: an egress gateway serves many).
    pub(crate) fn decide(&self, data: &[u8], msg: &Message, now_us: u64, scope: Option<(&str, &str)>) -> (QueryOutcome, u64) {
        self.stats.count(Stat::Queries, 1);
        let node = &self.config.node;
        let (namespace, workload) = scope.unwrap_or((&node.namespace, &node.workload));
        let policy = self.policy.load();
        let outcome = decide_query(
            data,
            msg,
            self.enforces().then_some(&**policy),
            namespace,
            workload,
            now_us / 1_000_000,
            &self.sinkhole,
        );
        match outcome {
            QueryOutcome::Forward => {}
            QueryOutcome::Shadow => self.stats.count(Stat::Shadowed, 1),
            QueryOutcome::Answer(_) => self.stats.count(Stat::Blocked, 1),
            QueryOutcome::Drop => self.stats.count(Stat::BlockedDropped, 1),
        }
        (outcome, policy.version)
    }

    /// Whether a feed is configured: the module enforces (else it only observes).
    pub(crate) fn enforces(&self) -> bool {
        self.config.feed.is_some()
    }

    /// Whether a collector is configured: the module ships events.
    pub(crate) fn ships(&self) -> bool {
        self.config.collector.is_some()
    }

    /// DNS over TCP: how long a forwarded query waits for its response.
    pub(crate) fn query_timeout_us(&self) -> u64 {
        self.config.query_timeout_ms.saturating_mul(1_000)
    }

    pub(crate) fn count(&self, stat: Stat, n: u64) {
        self.stats.count(stat, n);
    }

    /// Queues an event for the shipping thread; when the queue is full its
    /// oldest event is dropped (counted): the DNS path never waits.
    pub(crate) fn push(&self, seen: Seen) {
        if self.events.force_push(seen).is_some() {
            self.stats.count(Stat::EventsDropped, 1);
        }
    }

    /// Up to `max` queued events as one v2 batch body; None when none is
    /// queued. Each event is rendered straight into the batch; a client's
    /// JSON is encoded once a batch.
    pub fn take_batch(&self, max: usize) -> Option<(Vec<u8>, u64)> {
        let node = &self.config.node;
        let mut batch = BatchBuilder::new(&self.node_json);
        let mut clients: FastMap<(Held<48>, u16, Option<Arc<str>>), Client> = FastMap::default();
        while batch.len() < max {
            let Some(seen) = self.events.pop() else { break };
            // the module's own answer, or the resolver's (TCP), parsed here, off the DNS path
            let response = seen
                .response
                .as_deref()
                .and_then(|bytes| parse_message(bytes).ok())
                .map(|m| ResponseInfo::from_message(m, 32));
            let key = (seen.peer_ip.clone(), seen.peer_port, seen.peer.clone());
            let client = clients.entry(key).or_insert_with(|| {
                let ip = String::from_utf8_lossy(seen.peer_ip.bytes()).into_owned();
                let peer = seen.peer.as_deref().map(str::to_string);
                Client::new(ip, seen.peer_port, peer, node.namespace.clone(), node.workload.clone())
            });
            if !batch.fits_client(&client.json) {
                // only a batch already naming the most clients it may: this
                // event starts no batch of its own, and is counted as dropped
                self.stats.count(Stat::EventsDropped, 1);
                break;
            }
            batch.push_event(&Event {
                ts_micros: seen.ts_micros,
                client,
                transport: seen.transport,
                query: &seen.query,
                response: response.as_ref(),
                response_observed: seen.response_observed,
                latency_us: seen.latency_us,
                action: seen.action,
                policy_version: seen.policy_version,
            });
        }
        let n = batch.len() as u64;
        (n > 0).then(|| (batch.finish(), n))
    }

    /// Starts the shipping and feed threads (each only if configured); each
    /// first calls `on_thread` (the FFI layer lowers their CPU priority, so
    /// under contention Envoy's workers, the DNS path, are served first).
    pub fn start(self: &Arc<Self>, on_thread: fn()) -> Result<(), String> {
        let mut threads = self.threads.lock().map_err(|_| "thread list poisoned")?;
        if self.config.collector.is_some() {
            let me = Arc::clone(self);
            let t = std::thread::Builder::new().name("dnsguard-ship".into()).spawn(move || {
                on_thread();
                me.ship_loop();
            });
            threads.push(t.map_err(|e| e.to_string())?);
        }
        if self.config.feed.is_some() {
            let me = Arc::clone(self);
            let t = std::thread::Builder::new().name("dnsguard-feed".into()).spawn(move || {
                on_thread();
                me.feed_loop();
            });
            threads.push(t.map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// Stops the threads (a long poll in flight ends by its timeout).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handles = self.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for h in handles {
            let _ = h.join();
        }
    }

    fn sleep(&self, ms: u64) {
        // in slices, so stop() is seen soon
        let mut left = ms;
        while left > 0 && !self.stop.load(Ordering::Relaxed) {
            let step = left.min(50);
            std::thread::sleep(Duration::from_millis(step));
            left -= step;
        }
    }

    /// Ships queued events in batches (a v2 batch per POST).
    fn ship_loop(&self) {
        let Some(cfg) = &self.config.collector else { return };
        let auth = format!("Bearer {}", cfg.token);
        let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
        let mut collector = http::Connection::new(&cfg.address, Duration::from_millis(cfg.timeout_ms));
        while !self.stop.load(Ordering::Relaxed) {
            if self.events.len() < cfg.max_batch {
                self.sleep(cfg.flush_ms);
            }
            self.stats.gauge(Gauge::EventsQueued, self.events.len() as u64);
            let Some((body, n)) = self.take_batch(cfg.max_batch) else { continue };
            let sent = collector.request(&http::Request { method: "POST", path: &cfg.path, headers: &headers, body: &body, max_body: 64 * 1024 });
            match sent {
                Ok(r) if r.status == 202 || r.status == 200 => self.stats.count(Stat::EventsSent, n),
                _ => self.stats.count(Stat::EventsDropped, n),
            }
        }
    }

    /// Long-polls the feed; a verified body replaces the policy in one swap.
    fn feed_loop(&self) {
        let Some(cfg) = &self.config.feed else { return };
        let auth = format!("Bearer {}", cfg.token);
        let mut want_snapshot = true;
        while !self.stop.load(Ordering::Relaxed) {
            let version = self.policy_version();
            let since = if want_snapshot { 0 } else { version };
            let sep = if cfg.path.contains('?') { '&' } else { '?' };
            let path = format!("{}{sep}since={since}&wait_ms={}", cfg.path, cfg.long_poll_ms);
            let etag = format!("\"{version}\"");
            let mut headers = vec![("authorization", auth.as_str())];
            if since > 0 {
                headers.push(("if-none-match", etag.as_str()));
            }
            let timeout = Duration::from_millis(cfg.long_poll_ms + cfg.timeout_ms);
            let get = http::Request { method: "GET", path: &path, headers: &headers, body: b"", max_body: cfg.max_bytes };
            let answer = http::request(&cfg.address, &get, timeout);
            self.report_age();
            let pause = match answer {
                Ok(r) if r.status == 304 => {
                    self.feed_ok();
                    0
                }
                Ok(r) if r.status == 200 => match self.apply_feed(r.header("x-dnsguard-signature"), &r.body) {
                    Ok(applied) => {
                        want_snapshot = !applied;
                        0
                    }
                    Err(_) => {
                        want_snapshot = true;
                        cfg.poll_interval_ms
                    }
                },
                _ => {
                    self.stats.count(Stat::FeedErrors, 1);
                    cfg.poll_interval_ms
                }
            };
            self.sleep(if cfg.long_poll_ms > 0 { pause } else { pause.max(cfg.poll_interval_ms) });
        }
    }

    fn feed_ok(&self) {
        self.feed_last_ok_ms.store(now_micros() / 1_000, Ordering::Relaxed);
    }

    fn report_age(&self) {
        let age = (now_micros() / 1_000).saturating_sub(self.feed_last_ok_ms.load(Ordering::Relaxed)) / 1_000;
        self.stats.gauge(Gauge::FeedAgeSeconds, age);
    }

    /// Ok(true): applied (or already current); Ok(false): a delta that does
    /// not fit, ask for a snapshot; Err: rejected, the policy is unchanged.
    pub fn apply_feed(&self, signature: Option<&str>, body: &[u8]) -> Result<bool, String> {
        let Some(cfg) = &self.config.feed else { return Err("no feed configured".into()) };
        let current = self.policy.load();
        let is_snapshot = dnspolicy::parse_header(body).is_ok_and(|h| h.kind == dnspolicy::FeedKind::Snapshot);
        // a snapshot replaces the table; a delta applies to a copy of it
        let mut next = if is_snapshot {
            let mut fresh = Policy::default();
            fresh.version = current.version;
            fresh
        } else {
            (**current).clone()
        };
        match accept_feed(&mut next, &self.keys, signature, body, cfg.max_bytes, cfg.max_rules) {
            Ok(FeedOutcome::Current) => {
                self.feed_ok();
                Ok(true)
            }
            Ok(FeedOutcome::NeedSnapshot) => Ok(false),
            Ok(FeedOutcome::Applied { skipped, .. }) => {
                if skipped > 0 {
                    self.stats.count(Stat::FeedEntriesSkipped, skipped as u64);
                }
                self.stats.count(Stat::FeedUpdates, 1);
                self.stats.gauge(Gauge::FeedVersion, next.version);
                self.stats.gauge(Gauge::PolicyRules, next.len() as u64);
                self.policy.store(Arc::new(next));
                self.feed_ok();
                Ok(true)
            }
            Err(e) => {
                self.stats.count(Stat::FeedRejected, 1);
                Err(e)
            }
        }
    }

    /// Puts `policy` in force without the feed (fuzzing and benchmarks).
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// Events waiting to be shipped (tests).
    pub fn queued(&self) -> usize {
        self.events.len()
    }

}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::test_support::b64url;

    #[derive(Default)]
    struct Counts(Vec<AtomicU64>, Vec<AtomicU64>);

    struct Shared(Arc<Counts>);

    impl StatsSink for Shared {
        fn count(&self, stat: Stat, n: u64) {
            if let Some(c) = Stat::ALL.iter().position(|s| *s == stat).and_then(|i| self.0 .0.get(i)) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
        fn gauge(&self, gauge: Gauge, value: u64) {
            if let Some(g) = Gauge::ALL.iter().position(|s| *s == gauge).and_then(|i| self.0 .1.get(i)) {
                g.store(value, Ordering::Relaxed);
            }
        }
    }

    impl Counts {
        fn get(&self, stat: Stat) -> u64 {
            Stat::ALL.iter().position(|s| *s == stat).and_then(|i| self.0.get(i)).map_or(0, |c| c.load(Ordering::Relaxed))
        }
    }

    const SEED: [u8; 32] = [7; 32];

    fn module(queue: usize) -> (Module, Arc<Counts>) {
        let key = b64url(SigningKey::from_bytes(&SEED).verifying_key().as_bytes());
        let text = format!(
            r#"{{"node":{{"namespace":"shop","workload":"web","pod":"web-1"}},
                 "collector":{{"address":"127.0.0.1:9","token":"0123456789abcdef","max_queue":{queue}}},
                 "feed":{{"address":"127.0.0.1:9","token":"0123456789abcdef","keys":[{{"id":"k1","public_key":"{key}"}}]}},
                 "sinkhole":{{"a":"192.0.2.53"}}}}"#
        );
        let counts = Arc::new(Counts((0..Stat::ALL.len()).map(|_| AtomicU64::new(0)).collect(), (0..Gauge::ALL.len()).map(|_| AtomicU64::new(0)).collect()));
        let config = Config::parse(text.as_bytes()).unwrap_or_else(|e| unreachable!("{e}"));
        let m = Module::new(config, Box::new(Shared(Arc::clone(&counts)))).unwrap_or_else(|e| unreachable!("{e}"));
        (m, counts)
    }

    fn signed(body: &str) -> (String, Vec<u8>) {
        let sig = SigningKey::from_bytes(&SEED).sign(body.as_bytes());
        (format!("keyid=k1,alg=ed25519,sig={}", b64url(&sig.to_bytes())), body.as_bytes().to_vec())
    }

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn rcode(answer: &[u8]) -> u8 {
        answer.get(3).map_or(255, |b| b & 0x0f)
    }

    #[test]
    fn queries_pass_until_the_feed_blocks_them_then_are_answered_locally() {
        let (m, counts) = module(16);
        assert_eq!(m.on_datagram(&query("bad.example.net"), "10.0.0.1", 5353, 1_000_000), Reply::Pass);
        let (sig, body) = signed("dnsguard-policy/1\tsnapshot\t3\t0\t0\n+\td\tns:shop\ts\tnxdomain\t0\tbad.example.net\n");
        assert_eq!(m.apply_feed(Some(&sig), &body), Ok(true));
        assert_eq!(m.policy_version(), 3);
        let Reply::Answer(answer) = m.on_datagram(&query("www.bad.example.net"), "10.0.0.1", 5353, 2_000_000) else {
            unreachable!("a blocked name must be answered")
        };
        assert_eq!(rcode(&answer), 3); // NXDOMAIN, with the query's id
        assert_eq!(answer.get(..2), Some(&[0xab, 0xcd][..]));
        assert_eq!(m.on_datagram(&query("good.example.net"), "10.0.0.1", 5353, 2_000_000), Reply::Pass);
        assert_eq!((counts.get(Stat::Queries), counts.get(Stat::Blocked)), (3, 1));
        // the events: udp, the blocked one with the module's own answer, forwarded ones without a response
        let (body, n) = m.take_batch(16).unwrap_or_default();
        let batch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!((n, batch["v"].clone(), batch["node"]["namespace"].clone()), (3, 2.into(), "shop".into()));
        let events = batch["events"].as_array().cloned().unwrap_or_default();
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e[2] == "udp"));
        // [.., response, observed, latency, action, ..]: the blocked one with the module's answer
        assert_eq!(events.get(1).map(|e| (e[11].clone(), e[8][0].clone(), e[9].clone())), Some(("blocked".into(), "NXDOMAIN".into(), true.into())));
        assert_eq!(events.first().map(|e| (e[8].is_null(), e[9].clone())), Some((true, false.into())));
    }

    #[test]
    fn a_tampered_or_unsigned_feed_changes_nothing_and_is_counted() {
        let (m, counts) = module(16);
        let (sig, mut body) = signed("dnsguard-policy/1\tsnapshot\t3\t0\t0\n+\td\t*\ts\tnxdomain\t0\tbad.example.net\n");
        if let Some(b) = body.last_mut() {
            *b = b'x';
        }
        assert!(m.apply_feed(Some(&sig), &body).is_err());
        assert!(m.apply_feed(None, &body).is_err());
        assert_eq!(m.policy_version(), 0);
        assert_eq!(counts.get(Stat::FeedRejected), 2);
        assert_eq!(m.on_datagram(&query("bad.example.net"), "10.0.0.1", 1, 0), Reply::Pass);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_event_and_counts_it() {
        let (m, counts) = module(2);
        for name in ["a.example", "b.example", "c.example"] {
            m.on_datagram(&query(name), "10.0.0.1", 1, 0);
        }
        assert_eq!(m.queued(), 2);
        assert_eq!(counts.get(Stat::EventsDropped), 1);
        let first: serde_json::Value = m.take_batch(1).and_then(|(b, _)| serde_json::from_slice(&b).ok()).unwrap_or_default();
        assert_eq!(first["events"][0][4], "b.example");
    }

    #[test]
    fn a_batch_names_each_peer_once_whatever_the_length_of_its_address() {
        let (m, _) = module(16);
        // an address over the inline bound (a scoped IPv6 one) is held on the heap
        let long = "fe80::1234:5678:9abc:def0%a-very-long-interface-name0";
        assert!(long.len() > 48);
        for (name, peer, port) in [("a.example", "10.0.0.1", 5353), ("b.example", long, 53), ("c.example", "10.0.0.1", 5353), ("d.example", "10.0.0.1", 5354)] {
            m.on_datagram(&query(name), peer, port, 0);
        }
        let batch: serde_json::Value = m.take_batch(16).and_then(|(b, _)| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let clients = batch["clients"].as_array().cloned().unwrap_or_default();
        let named: Vec<(String, u64)> = clients.iter().map(|c| (c["ip"].as_str().unwrap_or("").to_string(), c["port"].as_u64().unwrap_or(0))).collect();
        assert_eq!(named, [("10.0.0.1".to_string(), 5353), (long.to_string(), 53), ("10.0.0.1".to_string(), 5354)]);
        let at: Vec<(serde_json::Value, serde_json::Value)> = batch["events"].as_array().cloned().unwrap_or_default().iter().map(|e| (e[1].clone(), e[4].clone())).collect();
        assert_eq!(at, [(0.into(), "a.example".into()), (1.into(), "b.example".into()), (0.into(), "c.example".into()), (2.into(), "d.example".into())]);
    }

    #[test]
    fn datagrams_that_are_not_queries_pass_and_are_counted() {
        let (m, counts) = module(4);
        let mut response = query("a.example");
        if let Some(b) = response.get_mut(2) {
            *b |= 0x80;
        }
        for bytes in [&b""[..], b"\x00\x01garbage", &response] {
            assert_eq!(m.on_datagram(bytes, "10.0.0.1", 1, 0), Reply::Pass);
        }
        assert_eq!(counts.get(Stat::ParseErrors), 3);
        assert_eq!(m.queued(), 0);
    }
}
