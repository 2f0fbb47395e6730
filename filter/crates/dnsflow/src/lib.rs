//! What dnsguard does with one DNS query, whichever host runs it: the
//! proxy-wasm filter (TCP, DoT, DoH) and the native dynamic module (UDP) call
//! the same functions, so a query is decided, answered and reported the same
//! way on every transport.
//!
//! * [`decide_query`]: the policy's decision for a parsed query and, for a
//!   block, the local answer;
//! * [`event`]: events as v2 batches (node once, clients once, events as arrays);
//! * [`pairing`]: queries waiting for their response, and those that leave
//!   unanswered;
//! * [`peer_scope`]: the namespace and service account a TLS peer's SPIFFE id names;
//! * [`accept_feed`]: a feed body checked (size, Ed25519 signature, header,
//!   version order) and applied to a policy.

#![forbid(unsafe_code)]

pub mod event;
pub mod pairing;

/// A segment of a SPIFFE id ``spiffe://<trust domain>/ns/<namespace>/sa/<account>``.
fn spiffe_part<'a>(uri: &'a str, key: &str) -> Option<&'a str> {
    let path = uri.strip_prefix("spiffe://")?.split_once('/')?.1;
    let mut parts = path.split('/');
    while let Some(p) = parts.next() {
        if p == key {
            return parts.next().filter(|v| !v.is_empty());
        }
    }
    None
}

/// The namespace of a SPIFFE id, if it is one.
pub fn spiffe_namespace(uri: &str) -> Option<&str> {
    spiffe_part(uri, "ns")
}

/// The policy scope of a TLS peer: its SPIFFE id's namespace and service
/// account (empty if it names none). None when the peer is not a SPIFFE id
/// with a namespace: the node's scope applies.
pub fn peer_scope(peer: &str) -> Option<(&str, &str)> {
    Some((spiffe_namespace(peer)?, spiffe_part(peer, "sa").unwrap_or_default()))
}

use dnspolicy::{parse_header, verify, Action, FeedKind, Policy, PublicKey};
use dnswire::{local_answer, Message, Sinkhole, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED};

/// What happens to a query.
#[derive(Debug, PartialEq, Eq)]
pub enum QueryOutcome {
    /// Goes to the resolver: nothing applies, or an allow rule.
    Forward,
    /// Goes to the resolver, marked in its event (shadow verdicts, log rules).
    Shadow,
    /// Answered locally with these bytes; the resolver never sees the query.
    Answer(Vec<u8>),
    /// Blocked, but no answer can be built (a question that cannot be copied):
    /// it must not reach the resolver either.
    Drop,
}

impl QueryOutcome {
    /// The event's `action` for this outcome.
    pub fn event_action(&self) -> &'static str {
        match self {
            QueryOutcome::Forward => "allowed",
            QueryOutcome::Shadow => "shadow",
            QueryOutcome::Answer(_) | QueryOutcome::Drop => "blocked",
        }
    }
}

/// The decision for the query `msg` (parsed from `bytes`) asked by `workload`
/// in `namespace` at `now_s`, under `policy` (None: observe only).
pub fn decide_query(
    bytes: &[u8],
    msg: &Message,
    policy: Option<&Policy>,
    namespace: &str,
    workload: &str,
    now_s: u64,
    sinkhole: &Sinkhole,
) -> QueryOutcome {
    let (Some(policy), Some(q)) = (policy, msg.questions.first()) else {
        return QueryOutcome::Forward;
    };
    let rcode = match policy.decide(&q.name, namespace, workload, now_s).map(|d| d.action) {
        Some(Action::Nxdomain) => RCODE_NXDOMAIN,
        Some(Action::Refused) => RCODE_REFUSED,
        Some(Action::Sinkhole) => RCODE_NOERROR,
        Some(Action::Shadow | Action::Log) => return QueryOutcome::Shadow,
        Some(Action::Allow) | None => return QueryOutcome::Forward,
    };
    let sink = (rcode == RCODE_NOERROR).then_some(sinkhole);
    match local_answer(bytes, msg, rcode, sink, "blocked by dnsguard") {
        Ok(answer) => QueryOutcome::Answer(answer),
        Err(_) => QueryOutcome::Drop,
    }
}

/// What a verified feed body did to the policy.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedOutcome {
    /// Applied: the policy is at a new version (entries that did not parse were skipped).
    Applied { skipped: usize, first_skip: Option<String> },
    /// The version the policy already holds: nothing to do.
    Current,
    /// A delta cut from another version: ask for a snapshot.
    NeedSnapshot,
}

/// Checks a feed answer's body and applies it to `policy`: refused (Err, the
/// policy unchanged) when it is too large, unsigned or signed by no key in
/// `keys`, or its header is malformed. Fail-static: the caller keeps serving
/// the policy it has.
pub fn accept_feed(
    policy: &mut Policy,
    keys: &[PublicKey],
    signature: Option<&str>,
    body: &[u8],
    max_bytes: usize,
    max_rules: usize,
) -> Result<FeedOutcome, String> {
    if body.len() > max_bytes {
        return Err(format!("body of {} bytes exceeds max_bytes {max_bytes}", body.len()));
    }
    verify(signature, body, keys).map_err(|e| e.to_string())?;
    let head = parse_header(body).map_err(|e| e.to_string())?;
    if head.kind == FeedKind::Delta && head.base != policy.version && head.version > policy.version {
        return Ok(FeedOutcome::NeedSnapshot);
    }
    if head.kind == FeedKind::Snapshot && head.version == policy.version {
        return Ok(FeedOutcome::Current);
    }
    let applied = policy.apply_body(body, max_rules)?;
    Ok(FeedOutcome::Applied { skipped: applied.skipped, first_skip: applied.first_skip })
}

#[cfg(test)]
mod tests {
    use super::{peer_scope, spiffe_namespace};

    #[test]
    fn reads_the_namespace_and_account_of_a_spiffe_id() {
        assert_eq!(spiffe_namespace("spiffe://cluster.local/ns/shop/sa/web"), Some("shop"));
        assert_eq!(spiffe_namespace("spiffe://td/ns//sa/web"), None);
        assert_eq!(spiffe_namespace("CN=web"), None);
        assert_eq!(peer_scope("spiffe://td/ns/pay/sa/api"), Some(("pay", "api")));
        assert_eq!(peer_scope("spiffe://td/ns/pay"), Some(("pay", "")));
        assert_eq!(peer_scope("CN=web,O=shop"), None);
    }
}
