//! DNS events built from parsed messages, shipped as v2 batches (see
//! streams/ingest/schemas/dns-batch-v2.schema.json): the node's object once
//! per batch, each distinct client's object once, and each event as a
//! fixed-order array.
//!
//! An event is encoded when it happens ([`Event::encode`]) except for its
//! client's index in the batch, which is known only when the batch is built
//! ([`BatchBuilder`]); the client's object is encoded once per connection.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use dnswire::{class_name, rcode_name, type_name, Message, Question};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    pub namespace: String,
    pub workload: String,
    pub pod: String,
    pub service_account: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Client {
    pub ip: String,
    pub port: u16,
    /// TLS peer identity (URI SAN, else subject) when the client presented a certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The namespace policy scopes apply to: the SPIFFE peer's, else the node's.
    #[serde(skip)]
    pub namespace: String,
    /// The workload policy scopes apply to: the SPIFFE peer's service account, else the node's workload.
    #[serde(skip)]
    pub workload: String,
    /// This client's JSON object, encoded once for all its events (shared by them).
    #[serde(skip)]
    pub json: Arc<str>,
}

impl Client {
    pub fn new(ip: String, port: u16, peer: Option<String>, namespace: String, workload: String) -> Client {
        let mut c = Client { ip, port, peer, namespace, workload, json: Arc::from("") };
        c.json = Arc::from(serde_json::to_string(&c).unwrap_or_else(|_| "{}".to_string()));
        c
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryInfo {
    pub id: u16,
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: Cow<'static, str>,
    pub class: Cow<'static, str>,
    pub rd: bool,
    pub cd: bool,
    #[serde(rename = "do")]
    pub dnssec_ok: bool,
}

impl QueryInfo {
    /// The query of `msg` (its first question), taking the message apart:
    /// the name moves into the event, uncopied. None without a question.
    pub fn take_from(mut msg: Message) -> Option<QueryInfo> {
        if msg.questions.is_empty() {
            return None;
        }
        let q = msg.questions.swap_remove(0);
        let h = msg.header;
        Some(QueryInfo {
            id: h.id,
            name: q.name,
            qtype: type_name(q.qtype),
            class: class_name(q.qclass),
            rd: h.rd(),
            cd: h.cd(),
            dnssec_ok: msg.edns.as_ref().is_some_and(|e| e.dnssec_ok),
        })
    }

    pub fn from_message(msg: &Message, q: &Question) -> QueryInfo {
        QueryInfo {
            id: msg.header.id,
            name: q.name.clone(),
            qtype: type_name(q.qtype),
            class: class_name(q.qclass),
            rd: msg.header.rd(),
            cd: msg.header.cd(),
            dnssec_ok: msg.edns.as_ref().is_some_and(|e| e.dnssec_ok),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswerInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: Cow<'static, str>,
    pub ttl: u32,
    pub data: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseInfo {
    pub rcode: Cow<'static, str>,
    pub aa: bool,
    pub tc: bool,
    pub ra: bool,
    pub ad: bool,
    pub answers: Vec<AnswerInfo>,
    pub min_ttl: Option<u32>,
}

impl ResponseInfo {
    /// Takes the message apart: its names move into the event, uncopied.
    pub fn from_message(msg: Message, max_answers: usize) -> ResponseInfo {
        let (rcode, min_ttl) = (rcode_name(msg.rcode()), msg.min_answer_ttl());
        let h = msg.header;
        ResponseInfo {
            rcode,
            aa: h.aa(),
            tc: h.tc(),
            ra: h.ra(),
            ad: h.ad(),
            answers: msg
                .answers
                .into_iter()
                .take(max_answers)
                .map(|r| {
                    let (rtype, ttl) = (type_name(r.rtype), r.ttl);
                    let data = r.into_data_text();
                    AnswerInfo { name: data.0, rtype, ttl, data: data.1 }
                })
                .collect(),
            min_ttl,
        }
    }
}

pub struct Event<'a> {
    pub ts_micros: u64,
    pub client: &'a Client,
    pub transport: &'static str,
    pub query: &'a QueryInfo,
    pub response: Option<&'a ResponseInfo>,
    /// Whether the path that built the event could see the response at all:
    /// false on UDP, where the module sees queries only (`response` is then
    /// null without meaning "unanswered").
    pub response_observed: bool,
    pub latency_us: Option<u64>,
    pub action: &'static str,
    pub policy_version: u64,
}

/// The largest number of clients one v2 batch may name (the collector refuses more).
pub const MAX_BATCH_CLIENTS: usize = 4096;

/// An event encoded for a v2 batch, all but its client's index.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ts_micros: u64,
    /// The client's JSON object (shared with the connection's other events).
    pub client: Arc<str>,
    /// The event array after `[ts_us,client`: `,"tcp",id,...]`.
    pub tail: Vec<u8>,
}

impl Encoded {
    /// Bytes this event adds to a batch, about (for sizing buffers).
    pub fn len(&self) -> usize {
        self.tail.len() + 24
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Event<'_> {
    /// The event's v2 array, but for its client index (see [`BatchBuilder`]).
    pub fn encode(&self) -> Encoded {
        let q = self.query;
        let mut out = Vec::with_capacity(96 + q.name.len() + self.response.map_or(0, |r| r.answers.len() * 64));
        self.encode_tail(&mut out);
        Encoded { ts_micros: self.ts_micros, client: Arc::clone(&self.client.json), tail: out }
    }

    /// Appends the event's array after `[ts_us,client` to `out`.
    fn encode_tail(&self, out: &mut Vec<u8>) {
        let q = self.query;
        out.extend_from_slice(b",\"");
        out.extend_from_slice(self.transport.as_bytes()); // a fixed token: udp, tcp, dot, doh
        let _ = write!(out, "\",{},", q.id);
        let _ = serde_json::to_writer(&mut *out, &q.name);
        out.push(b',');
        let _ = serde_json::to_writer(&mut *out, &q.qtype);
        out.push(b',');
        let _ = serde_json::to_writer(&mut *out, &q.class);
        let qflags = u8::from(q.rd) | u8::from(q.cd) << 1 | u8::from(q.dnssec_ok) << 2;
        let _ = write!(out, ",{qflags},");
        match self.response {
            None => out.extend_from_slice(b"null"),
            Some(r) => {
                out.push(b'[');
                let _ = serde_json::to_writer(&mut *out, &r.rcode);
                let flags = u8::from(r.aa) | u8::from(r.tc) << 1 | u8::from(r.ra) << 2 | u8::from(r.ad) << 3;
                let _ = write!(out, ",{flags},");
                let _ = serde_json::to_writer(&mut *out, &r.min_ttl);
                out.extend_from_slice(b",[");
                for (i, a) in r.answers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'[');
                    let _ = serde_json::to_writer(&mut *out, &a.name);
                    out.push(b',');
                    let _ = serde_json::to_writer(&mut *out, &a.rtype);
                    let _ = write!(out, ",{},", a.ttl);
                    let _ = serde_json::to_writer(&mut *out, &a.data);
                    out.push(b']');
                }
                out.extend_from_slice(b"]]");
            }
        }
        // a response of a path that cannot see responses is still one observed
        let observed = self.response_observed || self.response.is_some();
        let _ = write!(out, ",{observed},");
        let _ = serde_json::to_writer(&mut *out, &self.latency_us);
        out.extend_from_slice(b",\"");
        out.extend_from_slice(self.action.as_bytes()); // a fixed token: allowed, shadow, blocked
        let _ = write!(out, "\",{}]", self.policy_version);
    }
}

/// A small, fast hash (FxHash's word-at-a-time rotate, xor, multiply) for
/// the short keys of a batch's maps (client objects, peer addresses), which
/// no one can grow past a batch's bound of [`MAX_BATCH_CLIENTS`] entries.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.add(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            if let Some(d) = b.get_mut(..rest.len()) {
                d.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// A map hashed with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

/// Builds one v2 batch body: `{"v":2,"node":...,"clients":[...],"events":[...]}`.
pub struct BatchBuilder<'n> {
    node_json: &'n str,
    clients: Vec<Arc<str>>,
    index: FastMap<Arc<str>, usize>,
    events: Vec<u8>,
    count: usize,
}

impl<'n> BatchBuilder<'n> {
    pub fn new(node_json: &'n str) -> BatchBuilder<'n> {
        BatchBuilder { node_json, clients: Vec::new(), index: FastMap::default(), events: Vec::with_capacity(64 * 1024), count: 0 }
    }

    /// Events in the batch so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `e` fits: false only when it names a new client and the batch
    /// already names [`MAX_BATCH_CLIENTS`].
    pub fn fits(&self, e: &Encoded) -> bool {
        self.fits_client(&e.client)
    }

    /// Whether an event of the client whose object is `client` fits (see [`BatchBuilder::fits`]).
    pub fn fits_client(&self, client: &Arc<str>) -> bool {
        self.clients.len() < MAX_BATCH_CLIENTS || self.last_client_is(client) || self.index.contains_key(client)
    }

    fn last_client_is(&self, client: &Arc<str>) -> bool {
        self.clients.last().is_some_and(|c| Arc::ptr_eq(c, client))
    }

    /// The client's index in the batch, added if new.
    fn client_index(&mut self, client: &Arc<str>) -> usize {
        if self.last_client_is(client) {
            self.clients.len() - 1
        } else if let Some(&at) = self.index.get(client) {
            at
        } else {
            let at = self.clients.len();
            self.clients.push(Arc::clone(client));
            self.index.insert(Arc::clone(client), at);
            at
        }
    }

    fn open_event(&mut self, ts_micros: u64, client: &Arc<str>) {
        let at = self.client_index(client);
        if self.count > 0 {
            self.events.push(b',');
        }
        let _ = write!(self.events, "[{ts_micros},{at}");
        self.count += 1;
    }

    /// Adds `e` (the caller checked [`BatchBuilder::fits`]).
    pub fn push(&mut self, e: &Encoded) {
        self.open_event(e.ts_micros, &e.client);
        self.events.extend_from_slice(&e.tail);
    }

    /// Adds `e`, encoded straight into the batch (the caller checked
    /// [`BatchBuilder::fits_client`] with its client's object): the same
    /// bytes as [`Event::encode`] then [`BatchBuilder::push`], without the
    /// intermediate copy.
    pub fn push_event(&mut self, e: &Event<'_>) {
        self.open_event(e.ts_micros, &e.client.json);
        e.encode_tail(&mut self.events);
    }

    /// The batch's JSON body.
    pub fn finish(self) -> Vec<u8> {
        let clients: usize = self.clients.iter().map(|c| c.len() + 1).sum();
        let mut out = Vec::with_capacity(48 + self.node_json.len() + clients + self.events.len());
        out.extend_from_slice(br#"{"v":2,"node":"#);
        out.extend_from_slice(self.node_json.as_bytes());
        out.extend_from_slice(br#","clients":["#);
        for (i, c) in self.clients.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(br#"],"events":["#);
        out.extend_from_slice(&self.events);
        out.extend_from_slice(b"]}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_response() -> ResponseInfo {
        ResponseInfo {
            rcode: "NOERROR".into(),
            aa: false,
            tc: false,
            ra: true,
            ad: false,
            answers: vec![AnswerInfo { name: "ex\"ample.com".into(), rtype: "A".into(), ttl: 30, data: "192.0.2.1".into() }],
            min_ttl: Some(30),
        }
    }

    fn event<'a>(client: &'a Client, query: &'a QueryInfo, response: Option<&'a ResponseInfo>, observed: bool) -> Event<'a> {
        Event {
            ts_micros: 1_795_608_000_000_001,
            client,
            transport: "dot",
            query,
            response,
            response_observed: observed,
            latency_us: response.map(|_| 12),
            action: "shadow",
            policy_version: 42,
        }
    }

    /// The spliced encoding is the v2 batch of the schema, element for element.
    #[test]
    fn a_batch_is_the_v2_encoding_of_its_events() {
        let node = Node { id: "sidecar~1".into(), namespace: "shop\\x".into(), ..Node::default() };
        let node_json = serde_json::to_string(&node).unwrap_or_default();
        let a = Client::new("10.0.0.1".into(), 5353, Some("spiffe://td/ns/a/sa/b".into()), "a".into(), "b".into());
        let b = Client::new("10.0.0.2".into(), 53, None, "a".into(), "b".into());
        let query = QueryInfo { id: 7, name: "a\u{1}.example".into(), qtype: "TYPE999".into(), class: "IN".into(), rd: true, cd: false, dnssec_ok: true };
        let response = sample_response();
        let mut builder = BatchBuilder::new(&node_json);
        for e in [event(&a, &query, Some(&response), true), event(&b, &query, None, true), event(&a, &query, None, false)] {
            builder.push(&e.encode());
        }
        assert_eq!(builder.len(), 3);
        let got: serde_json::Value = serde_json::from_slice(&builder.finish()).unwrap_or_default();
        let answer = serde_json::json!(["ex\"ample.com", "A", 30, "192.0.2.1"]);
        let want = serde_json::json!({
            "v": 2,
            "node": &node,
            "clients": [{"ip": "10.0.0.1", "port": 5353, "peer": "spiffe://td/ns/a/sa/b"}, {"ip": "10.0.0.2", "port": 53}],
            "events": [
                [1_795_608_000_000_001u64, 0, "dot", 7, "a\u{1}.example", "TYPE999", "IN", 5, ["NOERROR", 4, 30, [answer]], true, 12, "shadow", 42],
                [1_795_608_000_000_001u64, 1, "dot", 7, "a\u{1}.example", "TYPE999", "IN", 5, null, true, null, "shadow", 42],
                [1_795_608_000_000_001u64, 0, "dot", 7, "a\u{1}.example", "TYPE999", "IN", 5, null, false, null, "shadow", 42],
            ],
        });
        assert_eq!(got, want);
    }

    #[test]
    fn an_event_pushed_directly_is_the_same_bytes_as_encoded_then_pushed() {
        let node_json = serde_json::to_string(&Node::default()).unwrap_or_default();
        let a = Client::new("10.0.0.1".into(), 5353, None, "a".into(), "b".into());
        let b = Client::new("fe80::1".into(), 53, Some("spiffe://td/ns/a/sa/b".into()), "a".into(), "b".into());
        let query = QueryInfo { id: 9, name: "x\"y.example".into(), qtype: "A".into(), class: "IN".into(), rd: true, cd: true, dnssec_ok: false };
        let response = sample_response();
        let events = [event(&a, &query, Some(&response), true), event(&b, &query, None, false), event(&a, &query, None, true)];
        let (mut encoded, mut direct) = (BatchBuilder::new(&node_json), BatchBuilder::new(&node_json));
        for e in &events {
            assert!(encoded.fits(&e.encode()) && direct.fits_client(&e.client.json));
            encoded.push(&e.encode());
            direct.push_event(e);
        }
        assert_eq!(direct.len(), 3);
        assert_eq!(String::from_utf8_lossy(&direct.finish()), String::from_utf8_lossy(&encoded.finish()));
    }

    #[test]
    fn a_query_taken_from_its_message_is_the_one_read_from_it() {
        let mut wire = vec![0x12, 0x34, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in ["www", "example", "org"] {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.extend_from_slice(&[0, 0, 28, 0, 1]); // AAAA IN
        wire.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]); // OPT, DO
        let msg = dnswire::parse_message(&wire).unwrap_or_else(|e| unreachable!("{e:?}"));
        let read = msg.questions.first().map(|q| QueryInfo::from_message(&msg, q));
        let taken = QueryInfo::take_from(msg);
        let json = |q: Option<QueryInfo>| serde_json::to_value(q).unwrap_or_default();
        assert_eq!(json(taken.clone()), json(read));
        assert_eq!(taken.map(|q| (q.name, q.qtype, q.dnssec_ok, q.cd)), Some(("www.example.org".to_string(), "AAAA".into(), true, true)));
    }

    #[test]
    fn a_batch_names_at_most_max_batch_clients() {
        let node_json = serde_json::to_string(&Node::default()).unwrap_or_default();
        let query = QueryInfo { id: 7, name: "example.org".into(), qtype: "A".into(), class: "IN".into(), rd: true, cd: false, dnssec_ok: false };
        let mut builder = BatchBuilder::new(&node_json);
        let clients: Vec<Client> = (0..=MAX_BATCH_CLIENTS).map(|i| Client::new(format!("10.0.{}.{}", i / 256, i % 256), 53, None, String::new(), String::new())).collect();
        for c in &clients[..MAX_BATCH_CLIENTS] {
            let e = event(c, &query, None, false).encode();
            assert!(builder.fits(&e));
            builder.push(&e);
        }
        let again = event(&clients[0], &query, None, false).encode();
        assert!(builder.fits(&again), "a client already named always fits");
        assert!(!builder.fits(&event(&clients[MAX_BATCH_CLIENTS], &query, None, false).encode()));
    }
}
