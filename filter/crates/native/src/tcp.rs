//! DNS over TCP (and DoT, once Envoy terminated TLS) in the module's network
//! filter: one [`TcpConn`] per connection, fed the bytes of each read (client
//! to resolver) and each write (resolver to client), free of the FFI.
//!
//! Each direction has its own framer: several messages per read, messages
//! split across reads and pipelined queries answered out of order all work.
//! Each forwarded query waits on its connection for the response with its
//! transaction id and becomes one event with the response, its rcode and
//! answers and the latency; a query that gets none (timeout, id reused,
//! connection closed, more than [`MAX_WAITING`] in flight) becomes an
//! unanswered event. The response is parsed by the shipping thread, not here.
//!
//! Observing (no feed), bytes pass as they come. Enforcing, only whole
//! messages are passed on, in both directions (a partial one waits in its
//! framer for its last byte): a blocked query never leaves, even in part, and
//! the module's own answer, written straight to the client, always lands
//! between two whole responses.

use std::collections::VecDeque;
use std::sync::Arc;

use dnsflow::event::QueryInfo;
use dnsflow::QueryOutcome;
use dnswire::{parse_message, TcpFramer, MAX_DNS_MESSAGE};

use crate::module::{Held, Module, Seen, Stat};

/// Bytes buffered per direction at most (one maximal message plus its prefix, twice).
const MAX_BUFFER: usize = 2 * (2 + MAX_DNS_MESSAGE);
/// Reads are fed to a framer in slices this long, so a partial message plus
/// one slice always fits its buffer.
const SLICE: usize = MAX_DNS_MESSAGE + 1;
/// Forwarded queries waiting for their response, per connection.
pub const MAX_WAITING: usize = 256;

/// A forwarded query waiting for its response.
struct Waiting {
    ts_micros: u64,
    query: QueryInfo,
    action: &'static str,
    policy_version: u64,
}

/// One client connection.
pub struct TcpConn {
    down: TcpFramer,
    up: TcpFramer,
    pending: Pending,
}

/// Who the connection is, and its queries waiting for a response.
struct Pending {
    peer_ip: Held<48>,
    peer_port: u16,
    /// The TLS peer's identity, and the policy scope it names (SPIFFE).
    peer: Option<Arc<str>>,
    scope: Option<(String, String)>,
    transport: &'static str,
    /// oldest first; a handful at a time, so looked up by scanning
    waiting: VecDeque<Waiting>,
}

/// What becomes of one read (client to resolver).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// None: the read goes on as it is; Some: these bytes go instead (whole,
    /// allowed queries; the rest of a partial one waits for its next read).
    pub replace: Option<Vec<u8>>,
    /// The module's answers to blocked queries (framed), for the client.
    pub answers: Vec<Vec<u8>>,
}

fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(&u16::try_from(msg.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(msg);
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + msg.len());
    frame(&mut out, msg);
    out
}

/// Calls `each` with every whole message that `data` completes after what
/// `framer` holds; a partial one at the end waits in the framer. The common
/// case, a read of whole messages, is parsed in place, uncopied. Err: the
/// framer overflowed (not DNS framing), with the bytes of `data` it did not take.
fn each_message<'d>(framer: &mut TcpFramer, data: &'d [u8], mut each: impl FnMut(&[u8])) -> Result<(), &'d [u8]> {
    let mut rest = data;
    if framer.buffered() == 0 {
        while let [hi, lo, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            let Some(msg) = tail.get(..len) else { break };
            each(msg);
            rest = tail.get(len..).unwrap_or_default();
        }
    }
    let mut at = 0;
    while at < rest.len() {
        let end = (at + SLICE).min(rest.len());
        if framer.push(rest.get(at..end).unwrap_or_default()).is_err() {
            return Err(rest.get(at..).unwrap_or_default());
        }
        while let Some(msg) = framer.next_message() {
            each(msg);
        }
        at = end;
    }
    Ok(())
}

impl Pending {
    fn seen(&self, w: Waiting, response: Option<Vec<u8>>, now_us: u64) -> Seen {
        Seen {
            ts_micros: w.ts_micros,
            peer_ip: self.peer_ip.clone(),
            peer_port: self.peer_port,
            peer: self.peer.clone(),
            transport: self.transport,
            latency_us: response.as_ref().map(|_| now_us.saturating_sub(w.ts_micros)),
            query: w.query,
            response,
            response_observed: true,
            action: w.action,
            policy_version: w.policy_version,
        }
    }

    /// Reports the queries that waited longer than `timeout_us` as unanswered.
    fn expire(&mut self, m: &Module, now_us: u64, timeout_us: u64) {
        while self.waiting.front().is_some_and(|w| now_us.saturating_sub(w.ts_micros) > timeout_us) {
            let Some(w) = self.waiting.pop_front() else { break };
            m.push(self.seen(w, None, now_us));
        }
    }

    /// One query message; Some(answer) when the module answers it itself.
    fn on_query(&mut self, m: &Module, msg: &[u8], now_us: u64) -> QueryOutcome {
        let parsed = match parse_message(msg) {
            Ok(p) if !p.header.qr() && !p.questions.is_empty() => p,
            _ => {
                m.count(Stat::ParseErrors, 1);
                return QueryOutcome::Forward; // not a query: nothing to decide on
            }
        };
        let scope = self.scope.as_ref().map(|(ns, sa)| (ns.as_str(), sa.as_str()));
        let (outcome, policy_version) = m.decide(msg, &parsed, now_us, scope);
        if !m.ships() {
            return outcome;
        }
        let action = outcome.event_action();
        let Some(query) = QueryInfo::take_from(parsed) else { return outcome };
        let w = Waiting { ts_micros: now_us, query, action, policy_version };
        match &outcome {
            QueryOutcome::Forward | QueryOutcome::Shadow => {
                // an id still waiting was reused before its answer: that one goes unanswered
                if let Some(at) = self.waiting.iter().position(|x| x.query.id == w.query.id) {
                    if let Some(old) = self.waiting.remove(at) {
                        m.push(self.seen(old, None, now_us));
                    }
                }
                if self.waiting.len() >= MAX_WAITING {
                    if let Some(old) = self.waiting.pop_front() {
                        m.push(self.seen(old, None, now_us));
                    }
                }
                self.waiting.push_back(w);
            }
            QueryOutcome::Answer(answer) => m.push(self.seen(w, Some(answer.clone()), now_us)),
            QueryOutcome::Drop => m.push(self.seen(w, None, now_us)),
        }
        outcome
    }

    /// One response message from the resolver: pairs it with its query.
    fn on_response(&mut self, m: &Module, msg: &[u8], now_us: u64) {
        let &[hi, lo, flags, ..] = msg else {
            m.count(Stat::ParseErrors, 1);
            return;
        };
        if flags & 0x80 == 0 {
            return; // not a response
        }
        let id = u16::from_be_bytes([hi, lo]);
        let Some(at) = self.waiting.iter().position(|w| w.query.id == id) else { return };
        if let Some(w) = self.waiting.remove(at) {
            m.push(self.seen(w, Some(msg.to_vec()), now_us));
        }
    }

}

impl TcpConn {
    /// A connection from `peer_ip`:`peer_port`; `tls` when Envoy terminated
    /// TLS (DoT), with the client certificate's identity `peer` (URI SAN,
    /// else subject) if it presented one. A SPIFFE peer's namespace and
    /// service account are the policy scope of its queries.
    pub fn new(peer_ip: &str, peer_port: u16, tls: bool, peer: Option<&str>) -> TcpConn {
        let scope = peer.and_then(dnsflow::peer_scope).map(|(ns, sa)| (ns.to_string(), sa.to_string()));
        TcpConn {
            down: TcpFramer::new(MAX_BUFFER),
            up: TcpFramer::new(MAX_BUFFER),
            pending: Pending {
                peer_ip: Held::of(peer_ip.as_bytes()),
                peer_port,
                peer: peer.map(Arc::from),
                scope,
                transport: if tls { "dot" } else { "tcp" },
                waiting: VecDeque::new(),
            },
        }
    }

    /// Queries waiting for their response (tests).
    pub fn waiting(&self) -> usize {
        self.pending.waiting.len()
    }

    /// The client sent `chunks` (one read).
    pub fn on_read(&mut self, m: &Module, chunks: &[&[u8]], now_us: u64) -> ReadOutcome {
        self.pending.expire(m, now_us, m.query_timeout_us());
        if self.down.is_poisoned() {
            return ReadOutcome::default(); // not DNS framing: passes as it is
        }
        let enforce = m.enforces();
        let had_partial = self.down.buffered() > 0;
        let mut out = Vec::new();
        let mut answers = Vec::new();
        let mut removed = false;
        for chunk in chunks {
            let framing = each_message(&mut self.down, chunk, |msg| match self.pending.on_query(m, msg, now_us) {
                QueryOutcome::Forward | QueryOutcome::Shadow => {
                    if enforce {
                        frame(&mut out, msg);
                    }
                }
                QueryOutcome::Answer(answer) => {
                    removed = true;
                    answers.push(framed(&answer));
                }
                QueryOutcome::Drop => removed = true,
            });
            if let Err(rest) = framing {
                m.count(Stat::ParseErrors, 1);
                out.extend_from_slice(rest); // not DNS framing: nothing to enforce on
            }
        }
        let changed = enforce && (removed || had_partial || self.down.buffered() > 0);
        ReadOutcome { replace: changed.then_some(out), answers }
    }

    /// The resolver sent `chunks` (one write towards the client); Some: these
    /// bytes go to the client instead (enforcing: whole responses only).
    pub fn on_write(&mut self, m: &Module, chunks: &[&[u8]], now_us: u64) -> Option<Vec<u8>> {
        self.pending.expire(m, now_us, m.query_timeout_us());
        if self.up.is_poisoned() {
            return None;
        }
        let enforce = m.enforces();
        let had_partial = self.up.buffered() > 0;
        let mut out = Vec::new();
        for chunk in chunks {
            let framing = each_message(&mut self.up, chunk, |msg| {
                self.pending.on_response(m, msg, now_us);
                if enforce {
                    frame(&mut out, msg);
                }
            });
            if let Err(rest) = framing {
                m.count(Stat::ParseErrors, 1);
                out.extend_from_slice(rest);
            }
        }
        (enforce && (had_partial || self.up.buffered() > 0)).then_some(out)
    }

    /// The connection closed: what still waits goes unanswered.
    pub fn on_close(&mut self, m: &Module, now_us: u64) {
        while let Some(w) = self.pending.waiting.pop_front() {
            m.push(self.pending.seen(w, None, now_us));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use dnspolicy::Policy;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::test_support::b64url;
    use crate::config::Config;
    use crate::module::{Gauge, StatsSink};

    struct Sink(Arc<Vec<AtomicU64>>);

    impl StatsSink for Sink {
        fn count(&self, stat: Stat, n: u64) {
            if let Some(c) = Stat::ALL.iter().position(|s| *s == stat).and_then(|i| self.0.get(i)) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
        fn gauge(&self, _: Gauge, _: u64) {}
    }

    fn count(counts: &[AtomicU64], stat: Stat) -> u64 {
        Stat::ALL.iter().position(|s| *s == stat).and_then(|i| counts.get(i)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A module that observes, or (`enforce`) holds a policy blocking bad.example.net.
    fn module(enforce: bool) -> (Module, Arc<Vec<AtomicU64>>) {
        let feed = if enforce {
            // any well-formed key: the policy is put in force directly below
            let key = b64url(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes());
            format!(r#","feed":{{"address":"127.0.0.1:9","token":"0123456789abcdef","keys":[{{"id":"k1","public_key":"{key}"}}]}}"#)
        } else {
            String::new()
        };
        let text = format!(
            r#"{{"node":{{"namespace":"shop","workload":"web","pod":"web-1"}},
                 "collector":{{"address":"127.0.0.1:9","token":"0123456789abcdef","max_queue":64}},
                 "query_timeout_ms":1000{feed}}}"#
        );
        let counts = Arc::new((0..Stat::ALL.len()).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        let config = Config::parse(text.as_bytes()).unwrap_or_else(|e| unreachable!("{e}"));
        let m = Module::new(config, Box::new(Sink(Arc::clone(&counts)))).unwrap_or_else(|e| unreachable!("{e}"));
        if enforce {
            let mut p = Policy::default();
            p.apply_body(b"dnsguard-policy/1\tsnapshot\t3\t0\t0\n+\td\tns:shop\ts\tnxdomain\t0\tbad.example.net\n", 100)
                .unwrap_or_else(|e| unreachable!("{e}"));
            m.set_policy(p);
        }
        (m, counts)
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    /// The resolver's answer to `query`: NOERROR, one A record 192.0.2.1.
    fn response(query: &[u8]) -> Vec<u8> {
        let mut r = query.to_vec();
        if let Some(flags) = r.get_mut(2) {
            *flags |= 0x80;
        }
        if let Some(an) = r.get_mut(7) {
            *an = 1;
        }
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        r
    }

    fn stream(msgs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            frame(&mut out, m);
        }
        out
    }

    fn events(m: &Module) -> Vec<serde_json::Value> {
        let batch: serde_json::Value = m.take_batch(64).and_then(|(b, _)| serde_json::from_slice(&b).ok()).unwrap_or_default();
        batch["events"].as_array().cloned().unwrap_or_default()
    }

    // v2 event array: [ts, client, transport, id, name, type, class, qflags, response, observed, latency, action, version]

    #[test]
    fn observing_pipelined_queries_split_across_reads_pass_untouched_and_pair_with_responses_out_of_order() {
        let (m, counts) = module(false);
        let mut c = TcpConn::new("10.0.0.7", 40000, false, None);
        let (a, b) = (query(1, "a.example.com"), query(2, "b.example.com"));
        let bytes = stream(&[&a, &b]);
        let (first, second) = bytes.split_at(20); // a split inside the first query
        assert_eq!(c.on_read(&m, &[first], 1_000), ReadOutcome::default());
        assert_eq!(c.on_read(&m, &[&second[..3], &second[3..]], 2_000), ReadOutcome::default());
        assert_eq!(c.waiting(), 2);
        // answered out of order, the second response split across writes
        let answers = stream(&[&response(&b), &response(&a)]);
        let (w1, w2) = answers.split_at(answers.len() - 5);
        assert_eq!(c.on_write(&m, &[w1], 5_000), None);
        assert_eq!(c.on_write(&m, &[w2], 9_000), None);
        assert_eq!(c.waiting(), 0);
        assert_eq!(count(&counts, Stat::Queries), 2);
        let ev = events(&m);
        let got: Vec<(String, String, String, u64, String)> = ev
            .iter()
            .map(|e| {
                (
                    e[2].as_str().unwrap_or("").into(),
                    e[4].as_str().unwrap_or("").into(),
                    e[8][0].as_str().unwrap_or("").into(),
                    e[10].as_u64().unwrap_or(0),
                    e[8][3][0][3].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("tcp".into(), "b.example.com".into(), "NOERROR".into(), 3_000, "192.0.2.1".into()),
                // a whole at the second read (2 ms), answered at 9 ms
                ("tcp".into(), "a.example.com".into(), "NOERROR".into(), 7_000, "192.0.2.1".into()),
            ]
        );
    }

    #[test]
    fn enforcing_a_blocked_query_never_leaves_and_is_answered_with_its_id() {
        let (m, counts) = module(true);
        let mut c = TcpConn::new("10.0.0.7", 40000, true, None);
        let (ok1, bad, ok2) = (query(1, "a.example.com"), query(2, "www.bad.example.net"), query(3, "c.example.com"));
        let bytes = stream(&[&ok1, &bad, &ok2]);
        let (head, tail) = bytes.split_at(bytes.len() - 4); // the last query arrives in two reads
        let r = c.on_read(&m, &[head], 1_000);
        assert_eq!(r.replace, Some(stream(&[&ok1])), "only whole, allowed queries go on");
        let [answer] = r.answers.as_slice() else { unreachable!("one local answer, got {:?}", r.answers) };
        // framed, the query's id, NXDOMAIN
        assert_eq!(answer.get(2..4), Some(&[0, 2][..]));
        assert_eq!(answer.get(5).map(|b| b & 0x0f), Some(3));
        let r = c.on_read(&m, &[tail], 2_000);
        assert_eq!(r, ReadOutcome { replace: Some(stream(&[&ok2])), answers: vec![] });
        // a read of whole allowed queries goes on as it is
        let again = stream(&[&query(4, "d.example.com")]);
        assert_eq!(c.on_read(&m, &[&again], 3_000), ReadOutcome::default());
        assert_eq!(count(&counts, Stat::Blocked), 1);
        let ev = events(&m);
        let blocked: Vec<_> = ev.iter().filter(|e| e[11] == "blocked").collect();
        assert_eq!(blocked.len(), 1);
        assert_eq!((blocked[0][2].clone(), blocked[0][4].clone(), blocked[0][8][0].clone()), ("dot".into(), "www.bad.example.net".into(), "NXDOMAIN".into()));
    }

    #[test]
    fn enforcing_responses_reach_the_client_whole_so_local_answers_land_between_them() {
        let (m, _) = module(true);
        let mut c = TcpConn::new("10.0.0.7", 40000, false, None);
        let q = query(9, "a.example.com");
        assert_eq!(c.on_read(&m, &[&stream(&[&q])], 1_000), ReadOutcome::default());
        let answer = stream(&[&response(&q)]);
        let (w1, w2) = answer.split_at(7);
        assert_eq!(c.on_write(&m, &[w1], 2_000), Some(vec![]), "a partial response is held");
        assert_eq!(c.on_write(&m, &[w2], 3_000), Some(answer.clone()));
        assert_eq!(c.on_write(&m, &[&answer], 4_000), None, "whole responses pass as they are");
    }

    #[test]
    fn queries_without_a_response_are_reported_unanswered() {
        let (m, _) = module(false);
        let mut c = TcpConn::new("10.0.0.7", 40000, false, None);
        let q1 = query(1, "timeout.example.com");
        c.on_read(&m, &[&stream(&[&q1])], 1_000);
        // the id reused before an answer: the first goes unanswered
        c.on_read(&m, &[&stream(&[&query(2, "reused.example.com"), &query(2, "again.example.com")])], 2_000);
        // past the timeout (1 s), the next read reports the oldest
        c.on_read(&m, &[&stream(&[&query(3, "closed.example.com")])], 1_500_000);
        c.on_close(&m, 1_600_000);
        let ev = events(&m);
        let names: Vec<&str> = ev.iter().map(|e| e[4].as_str().unwrap_or("")).collect();
        assert_eq!(names, ["reused.example.com", "timeout.example.com", "again.example.com", "closed.example.com"]);
        // unanswered on TCP: the response was observable and did not come
        assert!(ev.iter().all(|e| e[8].is_null() && e[9] == true && e[10].is_null()));
    }

    #[test]
    fn reads_larger_than_a_slice_with_a_message_pending_are_framed_whole() {
        let (m, _) = module(true);
        let mut c = TcpConn::new("10.0.0.7", 40000, false, None);
        // 3,000 queries (~100 KB), the stream cut inside the first one and
        // again far past one framer slice (64 KiB), one blocked query among them
        let queries: Vec<Vec<u8>> = (0..3000u16)
            .map(|i| query(i, if i == 2500 { "x.bad.example.net" } else { "a.example.com" }))
            .collect();
        let refs: Vec<&[u8]> = queries.iter().map(Vec::as_slice).collect();
        let bytes = stream(&refs);
        assert!(bytes.len() > SLICE + 10);
        let (first, rest) = bytes.split_at(5);
        let r1 = c.on_read(&m, &[first], 1_000);
        assert_eq!(r1.replace, Some(vec![]));
        let r2 = c.on_read(&m, &[rest], 2_000);
        let allowed: Vec<&[u8]> = refs.iter().enumerate().filter(|(i, _)| *i != 2500).map(|(_, q)| *q).collect();
        assert_eq!(r2.replace, Some(stream(&allowed)));
        assert_eq!(r2.answers.len(), 1);
        assert_eq!(c.waiting(), MAX_WAITING);
    }

    #[test]
    fn a_spiffe_peer_is_scoped_by_its_own_namespace_and_named_in_its_events() {
        let (m, _) = module(true);
        let mut p = Policy::default();
        let rules = "dnsguard-policy/1\tsnapshot\t4\t0\t0\n+\td\tns:pay\ts\tnxdomain\t0\tpay-only.example.net\n";
        p.apply_body(rules.as_bytes(), 100).unwrap_or_else(|e| unreachable!("{e}"));
        m.set_policy(p);
        let q = stream(&[&query(1, "pay-only.example.net")]);
        // the node is in shop: the rule is not its own
        let mut own = TcpConn::new("10.0.0.7", 40000, true, None);
        assert!(own.on_read(&m, &[&q], 1_000).answers.is_empty());
        let peer = "spiffe://cluster.local/ns/pay/sa/api";
        let mut gateway = TcpConn::new("10.0.0.8", 40000, true, Some(peer));
        assert_eq!(gateway.on_read(&m, &[&q], 2_000).answers.len(), 1);
        let batch: serde_json::Value = m.take_batch(64).and_then(|(b, _)| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let peers: Vec<serde_json::Value> = batch["clients"].as_array().cloned().unwrap_or_default().iter().map(|c| c["peer"].clone()).collect();
        assert!(peers.contains(&serde_json::Value::from(peer)));
    }

    #[test]
    fn a_connection_keeps_at_most_max_waiting_queries() {
        let (m, _) = module(false);
        let mut c = TcpConn::new("10.0.0.7", 40000, false, None);
        let queries: Vec<Vec<u8>> = (0..MAX_WAITING as u16 + 10).map(|i| query(i, "x.example.com")).collect();
        let refs: Vec<&[u8]> = queries.iter().map(Vec::as_slice).collect();
        c.on_read(&m, &[&stream(&refs)], 1_000);
        assert_eq!(c.waiting(), MAX_WAITING);
    }

    #[test]
    fn bytes_that_are_not_dns_framing_pass_and_are_counted() {
        let (m, counts) = module(true);
        let mut c = TcpConn::new("10.0.0.7", 40000, false, None);
        // a bogus length prefix with no message behind it: waits, as a partial one would
        let r = c.on_read(&m, &[b"\x00\x05ab"], 1_000);
        assert_eq!(r.replace, Some(vec![]));
        // a well-framed message that is not a query passes, counted
        let garbage = stream(&[b"\x00\x01garbage"]);
        let mut c = TcpConn::new("10.0.0.7", 40001, false, None);
        assert_eq!(c.on_read(&m, &[&garbage], 1_000), ReadOutcome::default());
        assert_eq!(count(&counts, Stat::ParseErrors), 1);
    }
}
