//! v1 DNS events (see schemas/dns-event-v1.schema.json) built from parsed messages.
//!
//! Every event repeats the node's object (the same for the whole VM) and the
//! client's (the same for a connection), so those are encoded once and spliced
//! in; only the query, the response and a few scalars are encoded per event.

use std::borrow::Cow;
use std::io::Write;

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
    /// This client's JSON object, encoded once for all its events.
    #[serde(skip)]
    pub json: String,
}

impl Client {
    pub fn new(ip: String, port: u16, peer: Option<String>, namespace: String, workload: String) -> Client {
        let mut c = Client { ip, port, peer, namespace, workload, json: String::new() };
        c.json = serde_json::to_string(&c).unwrap_or_else(|_| "{}".to_string());
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

impl Event<'_> {
    /// The v1 JSON of this event, with the VM's node object given pre-encoded.
    pub fn to_json(&self, node_json: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(384 + node_json.len() + self.client.json.len());
        out.extend_from_slice(br#"{"v":1,"ts":""#);
        write_rfc3339_micros(&mut out, self.ts_micros);
        out.extend_from_slice(br#"","node":"#);
        out.extend_from_slice(node_json.as_bytes());
        out.extend_from_slice(br#","client":"#);
        out.extend_from_slice(self.client.json.as_bytes());
        out.extend_from_slice(br#","transport":""#);
        out.extend_from_slice(self.transport.as_bytes()); // a fixed token: tcp, dot, doh
        out.extend_from_slice(br#"","query":"#);
        let _ = serde_json::to_writer(&mut out, self.query);
        out.extend_from_slice(br#","response":"#);
        let _ = serde_json::to_writer(&mut out, &self.response);
        if !self.response_observed {
            out.extend_from_slice(br#","response_observed":false"#);
        }
        out.extend_from_slice(br#","latency_us":"#);
        let _ = serde_json::to_writer(&mut out, &self.latency_us);
        out.extend_from_slice(br#","action":""#);
        out.extend_from_slice(self.action.as_bytes()); // a fixed token: allowed, shadow, blocked
        out.extend_from_slice(br#"","policy_version":"#);
        let _ = write!(out, "{}}}", self.policy_version);
        out
    }
}

/// RFC 3339 UTC with microseconds, from microseconds since the epoch.
fn write_rfc3339_micros(out: &mut Vec<u8>, micros: u64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z", rem / 3600, (rem / 60) % 60, rem % 60);
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

    /// The spliced encoding is the plain serde encoding of the v1 event, field for field.
    #[test]
    fn spliced_json_equals_serde_encoding() {
        let node = Node { id: "sidecar~1".into(), namespace: "shop\\x".into(), ..Node::default() };
        let node_json = serde_json::to_string(&node).unwrap_or_default();
        let client = Client::new("10.0.0.1".into(), 5353, Some("spiffe://td/ns/a/sa/b".into()), "a".into(), "b".into());
        let query = QueryInfo { id: 7, name: "a\u{1}.example".into(), qtype: "TYPE999".into(), class: "IN".into(), rd: true, cd: false, dnssec_ok: true };
        let response = sample_response();
        for (resp, latency) in [(Some(&response), Some(12)), (None, None)] {
            let event = Event {
                ts_micros: 1_795_608_000_000_001,
                client: &client,
                transport: "dot",
                query: &query,
                response: resp,
                response_observed: true,
                latency_us: latency,
                action: "shadow",
                policy_version: 42,
            };
            let got: serde_json::Value = serde_json::from_slice(&event.to_json(&node_json)).unwrap_or_default();
            let want = serde_json::json!({
                "v": 1,
                "ts": "2026-11-25T12:00:00.000001Z",
                "node": &node,
                "client": &client,
                "transport": "dot",
                "query": &query,
                "response": resp,
                "latency_us": latency,
                "action": "shadow",
                "policy_version": 42,
            });
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_query_only_event_says_its_response_was_not_observed() {
        let node_json = serde_json::to_string(&Node::default()).unwrap_or_default();
        let client = Client::new("10.0.0.1".into(), 5353, None, "a".into(), "b".into());
        let query = QueryInfo { id: 7, name: "example.org".into(), qtype: "A".into(), class: "IN".into(), rd: true, cd: false, dnssec_ok: false };
        let event = Event {
            ts_micros: 1, client: &client, transport: "udp", query: &query, response: None,
            response_observed: false, latency_us: None, action: "allowed", policy_version: 0,
        };
        let got: serde_json::Value = serde_json::from_slice(&event.to_json(&node_json)).unwrap_or_default();
        assert_eq!(got["response_observed"], serde_json::Value::Bool(false));
        assert!(got["response"].is_null());
    }

    fn rfc3339_micros(micros: u64) -> String {
        let mut out = Vec::new();
        write_rfc3339_micros(&mut out, micros);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn formats_rfc3339_with_micros() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(1_795_608_000_000_001), "2026-11-25T12:00:00.000001Z");
        assert_eq!(rfc3339_micros(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }
}
