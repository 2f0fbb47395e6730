//! The policy feed on the filter side.
//!
//! One root context per Envoy polls the feed server: root contexts (one per
//! worker thread, plus the main thread's) elect a poller through a lease in
//! shared data, renewed every tick and taken over when it goes stale. The
//! poller verifies each body's Ed25519 signature, parses it, and applies it only
//! if its version moves forward (a delta only onto the version it was cut
//! from); it then stores the whole table as a snapshot in shared data and
//! bumps the version key there. Every VM compares that small version key on
//! its tick and recompiles only when it changed.
//!
//! Fail-static: a feed that cannot be fetched, or is unsigned, tampered,
//! older, has a malformed header or is oversized, changes nothing; the last
//! verified policy stays in force, rejections are counted, and `feed_age_s`
//! keeps rising. A verified body with a record that does not parse applies
//! without that record, which is counted (`feed_entries_skipped`): one bad
//! entry never stops policy updates.

use std::time::Duration;

use dnsflow::{accept_feed, FeedOutcome};
use dnspolicy::{FeedKind, Policy, PublicKey};
use proxy_wasm::hostcalls;

use crate::config::FeedConfig;
use crate::state::{self, Gauge, Stat};

const LEASE_KEY: &str = "dnsguard.feed.poller";
const BODY_KEY: &str = "dnsguard.policy.body";
const VERSION_KEY: &str = "dnsguard.policy.version";
/// A poller that has not renewed its lease for this long is replaced.
const LEASE_STALE_MS: u64 = 5_000;

pub struct Poller {
    me: String,
    keys: Vec<PublicKey>,
    pub inflight: Option<u32>,
    next_poll_ms: u64,
    /// Ask for a snapshot rather than a delta (after a gap or a rejection).
    want_snapshot: bool,
    last_ok_ms: u64,
}

fn now_ms() -> u64 {
    state::now_micros() / 1_000
}

impl Poller {
    pub fn new(cfg: &FeedConfig, context_id: u32) -> Poller {
        // validated when the configuration was parsed
        let keys = cfg.public_keys().unwrap_or_default();
        Poller {
            me: format!("{}-{context_id}", state::now_micros()),
            keys,
            inflight: None,
            next_poll_ms: 0,
            want_snapshot: true,
            last_ok_ms: now_ms(),
        }
    }

    /// Renews or takes the lease; true if this root context is the poller.
    pub fn elected(&self) -> bool {
        let now = now_ms();
        let (value, cas) = hostcalls::get_shared_data(LEASE_KEY).unwrap_or((None, None));
        let holder = value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        let (owner, stamp) = holder.split_once('\t').unwrap_or(("", "0"));
        let stale = now.saturating_sub(stamp.parse().unwrap_or(0)) > LEASE_STALE_MS;
        if owner != self.me && !owner.is_empty() && !stale {
            return false;
        }
        let lease = format!("{}\t{now}", self.me);
        hostcalls::set_shared_data(LEASE_KEY, Some(lease.as_bytes()), cas).is_ok()
    }

    /// Seconds since the feed last answered with a verified body or "not
    /// modified" (with long polling, an idle feed answers every `long_poll_ms`).
    pub fn report_age(&self) {
        let age = now_ms().saturating_sub(self.last_ok_ms) / 1_000;
        state::with(|vm| vm.gauge(Gauge::FeedAgeSeconds, age));
    }

    /// The request to send now, if one is due: its headers and timeout.
    pub fn due(&mut self, cfg: &FeedConfig) -> Option<(Vec<(&'static str, String)>, Duration)> {
        let now = now_ms();
        if self.inflight.is_some() || now < self.next_poll_ms {
            return None;
        }
        let version = state::with(|vm| vm.policy.version);
        let since = if self.want_snapshot { 0 } else { version };
        let sep = if cfg.path.contains('?') { '&' } else { '?' };
        let path = format!("{}{sep}since={since}&wait_ms={}", cfg.path, cfg.long_poll_ms);
        let mut headers = vec![(":method", "GET".to_string()), (":path", path), (":authority", cfg.authority.clone())];
        if since > 0 {
            headers.push(("if-none-match", format!("\"{version}\"")));
        }
        headers.push(("authorization", format!("Bearer {}", cfg.token)));
        Some((headers, Duration::from_millis(cfg.long_poll_ms + cfg.timeout_ms)))
    }

    pub fn sent(&mut self, token: Option<u32>, cfg: &FeedConfig) {
        self.inflight = token;
        if token.is_none() {
            state::with(|vm| vm.count(Stat::FeedErrors, 1));
            self.next_poll_ms = now_ms() + cfg.poll_interval_ms;
        }
    }

    /// Handles the feed server's answer (status, signature header, body).
    pub fn on_response(&mut self, cfg: &FeedConfig, status: u16, signature: Option<String>, body: Option<Vec<u8>>, body_size: usize) {
        self.inflight = None;
        let now = now_ms();
        // long polling: ask again right away after an answer; plain polling: wait the interval
        let pause = if cfg.long_poll_ms > 0 { 0 } else { cfg.poll_interval_ms };
        self.next_poll_ms = now + pause;
        match status {
            304 => {
                self.last_ok_ms = now;
                return;
            }
            200 => {}
            _ => {
                state::with(|vm| vm.count(Stat::FeedErrors, 1));
                self.next_poll_ms = now + cfg.poll_interval_ms;
                if status != 0 {
                    log::warn!("dnsguard: feed answered {status}; keeping policy version {}", state::with(|vm| vm.policy.version));
                }
                return;
            }
        }
        let outcome = self.accept(cfg, signature.as_deref(), body.as_deref().unwrap_or_default(), body_size);
        match outcome {
            Ok(true) => {
                self.last_ok_ms = now;
                self.want_snapshot = false;
            }
            Ok(false) => {
                // a delta cut from another version: fetch a snapshot instead
                self.want_snapshot = true;
                self.next_poll_ms = now;
            }
            Err(reason) => {
                state::with(|vm| vm.count(Stat::FeedRejected, 1));
                log::warn!("dnsguard: feed rejected: {reason}");
                self.want_snapshot = true;
                self.next_poll_ms = now + cfg.poll_interval_ms;
            }
        }
    }

    /// Ok(true): applied and published; Ok(false): a delta that does not fit; Err: rejected.
    fn accept(&self, cfg: &FeedConfig, signature: Option<&str>, body: &[u8], body_size: usize) -> Result<bool, String> {
        if body_size > cfg.max_bytes {
            return Err(format!("body of {body_size} bytes exceeds max_bytes {}", cfg.max_bytes));
        }
        state::with(|vm| {
            let (skipped, first_skip) = match accept_feed(&mut vm.policy, &self.keys, signature, body, cfg.max_bytes, cfg.max_rules)? {
                FeedOutcome::NeedSnapshot => return Ok(false),
                // the policy this filter holds (an empty store's version 0 on a
                // fresh start): nothing to apply, and no replay of anything older
                FeedOutcome::Current => return Ok(true),
                FeedOutcome::Applied { skipped, first_skip } => (skipped, first_skip),
            };
            if skipped > 0 {
                vm.count(Stat::FeedEntriesSkipped, skipped as u64);
                log::warn!(
                    "dnsguard: feed version {}: {skipped} entries skipped ({})",
                    vm.policy.version,
                    first_skip.as_deref().unwrap_or("")
                );
            }
            // other VMs read the whole table: a snapshot as received, a delta's result re-serialized
            let snapshot;
            let is_snapshot = dnspolicy::parse_header(body).is_ok_and(|h| h.kind == FeedKind::Snapshot);
            let shared: &[u8] = if is_snapshot {
                body
            } else {
                snapshot = vm.policy.to_snapshot();
                &snapshot
            };
            hostcalls::set_shared_data(BODY_KEY, Some(shared), None).map_err(|e| format!("shared data: {e:?}"))?;
            hostcalls::set_shared_data(VERSION_KEY, Some(vm.policy.version.to_string().as_bytes()), None)
                .map_err(|e| format!("shared data: {e:?}"))?;
            log::info!("dnsguard: policy version {} ({} rules)", vm.policy.version, vm.policy.len());
            vm.count(Stat::FeedUpdates, 1);
            vm.gauge(Gauge::FeedVersion, vm.policy.version);
            vm.gauge(Gauge::PolicyRules, vm.policy.len() as u64);
            Ok(true)
        })
    }
}

/// Every VM: pick up a newer policy the poller published in shared data.
pub fn refresh(max_rules: usize) {
    let Ok((Some(v), _)) = hostcalls::get_shared_data(VERSION_KEY) else { return };
    let version: u64 = String::from_utf8_lossy(&v).parse().unwrap_or(0);
    if version <= state::with(|vm| vm.policy.version) {
        return;
    }
    let Ok((Some(body), _)) = hostcalls::get_shared_data(BODY_KEY) else { return };
    let mut next = Policy::default();
    match next.apply_body(&body, max_rules) {
        Ok(_) => state::with(|vm| {
            if next.version > vm.policy.version {
                vm.policy = next;
            }
        }),
        Err(e) => log::error!("dnsguard: shared policy unreadable: {e}"),
    }
}
