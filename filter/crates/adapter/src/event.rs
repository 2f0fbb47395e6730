//! v1 DNS events (see schemas/dns-event-v1.schema.json) built from parsed messages.

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
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryInfo {
    pub id: u16,
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub class: String,
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
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseInfo {
    pub rcode: String,
    pub aa: bool,
    pub tc: bool,
    pub ra: bool,
    pub ad: bool,
    pub answers: Vec<AnswerInfo>,
    pub min_ttl: Option<u32>,
}

impl ResponseInfo {
    pub fn from_message(msg: &Message, max_answers: usize) -> ResponseInfo {
        ResponseInfo {
            rcode: rcode_name(msg.rcode()),
            aa: msg.header.aa(),
            tc: msg.header.tc(),
            ra: msg.header.ra(),
            ad: msg.header.ad(),
            answers: msg
                .answers
                .iter()
                .take(max_answers)
                .map(|r| AnswerInfo { name: r.name.clone(), rtype: type_name(r.rtype), ttl: r.ttl, data: r.data_text() })
                .collect(),
            min_ttl: msg.min_answer_ttl(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    pub v: u8,
    pub ts: String,
    pub node: &'a Node,
    pub client: &'a Client,
    pub transport: &'static str,
    pub query: &'a QueryInfo,
    pub response: Option<&'a ResponseInfo>,
    pub latency_us: Option<u64>,
    pub action: &'static str,
    pub policy_version: u64,
}

/// RFC 3339 UTC with microseconds, from microseconds since the epoch.
pub fn rfc3339_micros(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z", rem / 3600, (rem / 60) % 60, rem % 60)
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

    #[test]
    fn formats_rfc3339_with_micros() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(1_795_608_000_000_001), "2026-11-25T12:00:00.000001Z");
        assert_eq!(rfc3339_micros(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }
}
