//! Per-VM state shared by the root context and the stream contexts of one
//! Envoy worker: the bounded event queue, queries awaiting answers, metrics.
//! A Wasm VM is single-threaded, so a thread-local `RefCell` is the whole story.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use dnsflow::pairing::{Pairing, Waiting};

use crate::event::{Client, Encoded, Event, Node, QueryInfo, ResponseInfo};

/// Queries awaiting an answer per VM until the configuration says otherwise.
const DEFAULT_MAX_PENDING: usize = 1_024;

#[derive(Clone, Copy)]
pub enum Stat {
    Queries,
    Responses,
    ParseErrors,
    EventsSent,
    EventsDropped,
    BatchesFailed,
    Unanswered,
    Blocked,
    Shadowed,
    FeedUpdates,
    FeedRejected,
    FeedErrors,
    BlockedDropped,
    FeedEntriesSkipped,
}

#[derive(Clone, Copy)]
pub enum Gauge {
    FeedVersion,
    FeedAgeSeconds,
    PolicyRules,
}

const GAUGE_NAMES: [(Gauge, &str); 3] = [
    (Gauge::FeedVersion, "dnsguard.feed_version"),
    (Gauge::FeedAgeSeconds, "dnsguard.feed_age_s"),
    (Gauge::PolicyRules, "dnsguard.policy_rules"),
];

const STAT_NAMES: [(Stat, &str); 14] = [
    (Stat::Queries, "dnsguard.queries"),
    (Stat::Responses, "dnsguard.responses"),
    (Stat::ParseErrors, "dnsguard.parse_errors"),
    (Stat::EventsSent, "dnsguard.events_sent"),
    (Stat::EventsDropped, "dnsguard.events_dropped"),
    (Stat::BatchesFailed, "dnsguard.batches_failed"),
    (Stat::Unanswered, "dnsguard.unanswered"),
    (Stat::Blocked, "dnsguard.blocked"),
    (Stat::Shadowed, "dnsguard.shadowed"),
    (Stat::FeedUpdates, "dnsguard.feed_updates"),
    (Stat::FeedRejected, "dnsguard.feed_rejected"),
    (Stat::FeedErrors, "dnsguard.feed_errors"),
    (Stat::BlockedDropped, "dnsguard.blocked_dropped"),
    (Stat::FeedEntriesSkipped, "dnsguard.feed_entries_skipped"),
];

pub struct Pending {
    pub query: QueryInfo,
    pub client: Rc<Client>,
    pub transport: &'static str,
    pub start_micros: u64,
    /// `allowed` or `shadow` (a blocked query is answered locally, never pending).
    pub action: &'static str,
    pub policy_version: u64,
}

impl Waiting for Pending {
    fn start_micros(&self) -> u64 {
        self.start_micros
    }
}

pub struct VmState {
    pub node: Node,
    /// The node's JSON object, encoded once for every event of this VM.
    pub node_json: String,
    pub queue: VecDeque<Encoded>,
    pub queue_max: usize,
    pub max_answers: usize,
    metric_ids: [Option<u32>; STAT_NAMES.len()],
    /// Counts of the per-message stats not yet added to Envoy's counters
    /// (one host call per tick instead of one per message).
    tallies: [u64; STAT_NAMES.len()],
    gauge_ids: [Option<u32>; GAUGE_NAMES.len()],
    /// The policy this VM enforces (a copy per VM, refreshed from shared data).
    pub policy: dnspolicy::Policy,
    pub sinkhole: dnswire::Sinkhole,
    /// Queries awaiting an answer, by (context, transaction id).
    pending: Pairing<Pending>,
}

impl Default for VmState {
    fn default() -> VmState {
        VmState {
            node: Node::default(),
            node_json: String::new(),
            queue: VecDeque::new(),
            queue_max: 0,
            max_answers: 0,
            metric_ids: [None; STAT_NAMES.len()],
            tallies: [0; STAT_NAMES.len()],
            gauge_ids: [None; GAUGE_NAMES.len()],
            policy: dnspolicy::Policy::default(),
            sinkhole: dnswire::Sinkhole::default(),
            pending: Pairing::new(DEFAULT_MAX_PENDING),
        }
    }
}

thread_local! {
    static VM: RefCell<VmState> = RefCell::new(VmState::default());
}

pub fn with<R>(f: impl FnOnce(&mut VmState) -> R) -> R {
    VM.with(|vm| f(&mut vm.borrow_mut()))
}

pub fn now_micros() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as u64)
}

impl VmState {
    pub fn define_metrics(&mut self) {
        for (i, (_, name)) in STAT_NAMES.iter().enumerate() {
            if let Some(slot) = self.metric_ids.get_mut(i) {
                *slot = hostcalls::define_metric(MetricType::Counter, name).ok();
            }
        }
        for (i, (_, name)) in GAUGE_NAMES.iter().enumerate() {
            if let Some(slot) = self.gauge_ids.get_mut(i) {
                *slot = hostcalls::define_metric(MetricType::Gauge, name).ok();
            }
        }
    }

    pub fn gauge(&self, gauge: Gauge, value: u64) {
        if let Some(Some(id)) = self.gauge_ids.get(gauge as usize) {
            let _ = hostcalls::record_metric(*id, value);
        }
    }

    pub fn count(&self, stat: Stat, n: u64) {
        if let Some(Some(id)) = self.metric_ids.get(stat as usize) {
            let _ = hostcalls::increment_metric(*id, n as i64);
        }
    }

    /// Count a stat that moves with every message (queries, responses): added
    /// to Envoy's counter by [`VmState::flush_tallies`] on the next tick.
    pub fn tally(&mut self, stat: Stat) {
        if let Some(t) = self.tallies.get_mut(stat as usize) {
            *t += 1;
        }
    }

    pub fn flush_tallies(&mut self) {
        for (stat, _) in STAT_NAMES {
            let n = self.tallies.get_mut(stat as usize).map_or(0, std::mem::take);
            if n > 0 {
                self.count(stat, n);
            }
        }
    }

    /// Queue an encoded event; when full, the oldest is dropped and counted.
    pub fn enqueue(&mut self, event: Encoded) {
        while self.queue.len() >= self.queue_max.max(1) {
            self.queue.pop_front();
            self.count(Stat::EventsDropped, 1);
        }
        self.queue.push_back(event);
    }

    pub fn emit(&mut self, p: &Pending, response: Option<&ResponseInfo>, now: u64) {
        self.emit_as(p, response, now, p.action);
    }

    pub fn emit_as(&mut self, p: &Pending, response: Option<&ResponseInfo>, now: u64, action: &'static str) {
        let event = Event {
            ts_micros: p.start_micros,
            client: &p.client,
            transport: p.transport,
            query: &p.query,
            response,
            response_observed: true,
            latency_us: response.map(|_| now.saturating_sub(p.start_micros)),
            action,
            policy_version: p.policy_version,
        };
        let encoded = event.encode();
        self.enqueue(encoded);
        if response.is_none() {
            self.count(Stat::Unanswered, 1);
        }
    }

    /// At most `max` queries wait for an answer (set from the config).
    pub fn set_max_pending(&mut self, max: usize) {
        self.pending = Pairing::new(max);
    }

    pub fn add_pending(&mut self, ctx: u32, p: Pending, now: u64) {
        let id = p.query.id;
        for old in self.pending.add(ctx, id, p) {
            self.emit(&old, None, now);
        }
    }

    pub fn is_pending(&self, ctx: u32, id: u16) -> bool {
        self.pending.contains(ctx, id)
    }

    pub fn take_pending(&mut self, ctx: u32, id: u16) -> Option<Pending> {
        self.pending.take(ctx, id)
    }

    /// Emit every query of `ctx` still waiting (the connection closed).
    pub fn close_context(&mut self, ctx: u32, now: u64) {
        for p in self.pending.close(ctx) {
            self.emit(&p, None, now);
        }
    }

    /// Emit queries unanswered for longer than `timeout_us`.
    pub fn sweep(&mut self, now: u64, timeout_us: u64) {
        for p in self.pending.expire(now, timeout_us) {
            self.emit(&p, None, now);
        }
    }
}
