//! dnsguard's Envoy filter: a thin proxy-wasm adapter over `dnswire`.
//!
//! The root context owns the configuration, the flush timer and the shipping
//! of event batches to the collector, and (on the one elected root context)
//! the policy feed; stream contexts (TCP/DoT network filter, or DoH HTTP
//! filter) parse, decide against the VM's compiled policy, pair messages and
//! queue events. The DNS path never waits for the analytics path: shipping
//! and polling happen on the timer, and a policy lookup is a few hash probes.

#![forbid(unsafe_code)]

mod attribution;
mod config;
mod dns;
mod doh;
mod event;
mod feed;
mod state;
mod tcp;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{ContextType, LogLevel};

pub use config::{Config, Mode};
use state::{now_micros, Stat};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, ..Root::default() }) });
}}

/// One v2 batch body, kept as sent for its retries.
struct Batch {
    body: Vec<u8>,
    events: usize,
    attempts: u32,
}

#[derive(Default)]
struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    /// Batches sent and awaiting an answer, by call token.
    inflight: HashMap<u32, Batch>,
    /// Batches that failed and wait for their next attempt (at most `max_inflight`).
    retry: VecDeque<Batch>,
    poller: Option<feed::Poller>,
}

impl Root {
    /// Send batches until `max_inflight` are out or nothing is left to send;
    /// with `partial` false, only full batches (`batch_size` events). A
    /// POST costs the worker thread about as much as tens of events, so
    /// between ticks (when the collector answers) only full batches go out,
    /// and the tick sends what is left.
    fn flush(&mut self, partial: bool) {
        let Some(cfg) = self.config.clone() else { return }; // an Rc: no copy of the config
        while self.inflight.len() < cfg.max_inflight {
            let batch = match self.retry.pop_front() {
                Some(b) => b,
                None if !partial && state::with(|vm| vm.queue.len()) < cfg.batch_size => return,
                None => {
                    let built = state::with(|vm| {
                        let mut b = event::BatchBuilder::new(&vm.node_json);
                        while b.len() < cfg.batch_size {
                            match vm.queue.front() {
                                Some(e) if b.fits(e) => b.push(e),
                                _ => break,
                            }
                            vm.queue.pop_front();
                        }
                        (b.len(), if b.is_empty() { Vec::new() } else { b.finish() })
                    });
                    let (events, body) = built;
                    if events == 0 {
                        return;
                    }
                    Batch { body, events, attempts: 0 }
                }
            };
            if !self.send(&cfg, batch) {
                return; // the host refused the call: try again next tick
            }
        }
    }

    fn send(&mut self, cfg: &Config, mut batch: Batch) -> bool {
        let auth = format!("Bearer {}", cfg.token);
        let headers = vec![
            (":method", "POST"),
            (":path", cfg.collector_path.as_str()),
            (":authority", cfg.collector_authority.as_str()),
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        batch.attempts += 1;
        match self.dispatch_http_call(
            &cfg.collector_cluster,
            headers,
            Some(&batch.body),
            vec![],
            Duration::from_millis(cfg.collector_timeout_ms),
        ) {
            Ok(token) => {
                self.inflight.insert(token, batch);
                true
            }
            Err(_) => {
                self.failed(batch);
                false
            }
        }
    }

    /// A batch failed: keep it for another attempt, or drop it after the last one.
    fn failed(&mut self, batch: Batch) {
        let (max_attempts, max_retry) = self.config.as_ref().map_or((1, 1), |c| (c.max_attempts, c.max_inflight));
        state::with(|vm| vm.count(Stat::BatchesFailed, 1));
        if batch.attempts >= max_attempts || self.retry.len() >= max_retry {
            let n = batch.events as u64;
            state::with(|vm| vm.count(Stat::EventsDropped, n));
        } else {
            self.retry.push_back(batch);
        }
    }
}

/// The `:status` of a dispatched call's answer; 0 when the call failed. A
/// failed call has no headers, and asking for one then can make the SDK
/// abort the VM on the host's "bad argument" status, so it is not asked.
fn call_status(ctx: &dyn Context, num_headers: usize) -> u16 {
    if num_headers == 0 {
        return 0;
    }
    ctx.get_http_call_response_header(":status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(0)
}

impl Root {
    fn poll_feed(&mut self) {
        let Some(cfg) = self.config.clone() else { return };
        let Some(feed_cfg) = cfg.feed.as_ref() else { return };
        feed::refresh(feed_cfg.max_rules);
        let Some(poller) = self.poller.as_mut() else { return };
        if !poller.elected() {
            return;
        }
        poller.report_age();
        let Some((headers, timeout)) = poller.due(feed_cfg) else { return };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let token = self.dispatch_http_call(&feed_cfg.cluster, headers, None, vec![], timeout).ok();
        if let Some(p) = self.poller.as_mut() {
            p.sent(token, feed_cfg);
        }
    }

    fn on_feed_response(&mut self, num_headers: usize, body_size: usize) {
        let Some(cfg) = self.config.clone() else { return };
        let Some(feed_cfg) = cfg.feed.as_ref() else { return };
        let status = call_status(self, num_headers);
        let signature = if status == 200 { self.get_http_call_response_header("x-dnsguard-signature") } else { None };
        let body = if status == 200 { self.get_http_call_response_body(0, body_size.min(feed_cfg.max_bytes)) } else { None };
        if let Some(p) = self.poller.as_mut() {
            p.on_response(feed_cfg, status, signature, body, body_size);
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.poller.as_ref().is_some_and(|p| p.inflight == Some(token_id)) {
            self.on_feed_response(num_headers, body_size);
            return;
        }
        let Some(batch) = self.inflight.remove(&token_id) else { return };
        let status = call_status(self, num_headers);
        let n = batch.events as u64;
        if (200..300).contains(&status) {
            state::with(|vm| vm.count(Stat::EventsSent, n));
            self.flush(false); // the collector keeps up: send the next full batch now
        } else if (400..500).contains(&status) && status != 429 {
            // the collector refused the batch itself: retrying cannot help
            state::with(|vm| {
                vm.count(Stat::BatchesFailed, 1);
                vm.count(Stat::EventsDropped, n);
            });
            log::warn!("dnsguard: collector refused a batch of {n} events with status {status}");
        } else {
            self.failed(batch);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let cfg = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log::error!("dnsguard: {e}");
                return false;
            }
        };
        let node = attribution::node(self, &cfg.metadata_keys);
        let node_json = serde_json::to_string(&node).unwrap_or_else(|_| "{}".to_string());
        state::with(|vm| {
            vm.define_metrics();
            vm.node = node;
            vm.node_json = node_json;
            vm.queue_max = cfg.queue_max;
            vm.set_max_pending(cfg.max_pending);
            vm.max_answers = cfg.max_answers;
            vm.sinkhole = dnswire::Sinkhole {
                a: cfg.sinkhole.a.map(|a| a.octets()),
                aaaa: cfg.sinkhole.aaaa.map(|a| a.octets()),
                ttl: cfg.sinkhole.ttl,
            };
        });
        self.poller = cfg.feed.as_ref().map(|f| feed::Poller::new(f, self.id));
        self.set_tick_period(Duration::from_millis(cfg.flush_interval_ms));
        self.config = Some(Rc::new(cfg));
        true
    }

    fn on_tick(&mut self) {
        if let Some(cfg) = &self.config {
            let timeout_us = cfg.query_timeout_ms * 1000;
            let now = now_micros();
            state::with(|vm| {
                vm.sweep(now, timeout_us);
                vm.flush_tallies();
            });
        }
        self.flush(true);
        self.poll_feed();
    }

    fn get_type(&self) -> Option<ContextType> {
        match self.config.as_ref().map(|c| c.mode) {
            Some(Mode::Doh) => Some(ContextType::HttpContext),
            _ => Some(ContextType::StreamContext),
        }
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        let enforce = self.config.as_ref().is_some_and(|c| c.feed.is_some());
        Some(Box::new(tcp::DnsTcp::new(context_id, enforce)))
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let enforce = self.config.as_ref().is_some_and(|c| c.feed.is_some());
        Some(Box::new(doh::DnsDoh::new(context_id, enforce)))
    }
}
