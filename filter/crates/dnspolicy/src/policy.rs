//! The compiled rule table and the decision for one query.
//!
//! Precedence (the same as the feed server documents and explains):
//!
//! 1. operator rules: the most specific match wins: scope first (workload,
//!    then namespace, then global), then the longer matching name (a rule on
//!    the root "." is the least specific: default-deny), and at equal
//!    specificity the stronger action wins ([`Action::precedence`]: a block
//!    beats an allow beats a mark; nxdomain, refused, sinkhole among blocks);
//! 2. so an operator `allow` keeps detector verdicts away from the name; an
//!    operator `log` or `shadow` mark yields only to a detector block;
//! 3. detector verdicts, namespace scope before global, then the longer
//!    name, then the stronger action;
//! 4. nothing matched: the query is allowed.
//!
//! Within one step a longer (more specific) matching name is preferred, and
//! expired rules never match.

use std::collections::{BTreeMap, HashMap};

use crate::feed::{for_each_change, parse_header, Change, FeedKind};
use crate::rules::{Action, MatchKind, Origin, Rule, Scope, ROOT};

/// What decides a query: the action, the rule, and the name it was set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub action: Action,
    pub rule: &'a Rule,
    pub name: &'a str,
}

/// What applying a body did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: FeedKind,
    /// Records skipped because they did not parse.
    pub skipped: usize,
    /// Why the first of them did not.
    pub first_skip: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Policy {
    pub version: u64,
    pub generated: u64,
    rules: HashMap<Box<str>, Vec<Rule>>,
    len: usize,
    named: Named,
}

/// One bit per hash of every name that has rules: a name whose bit is clear
/// has none. Most names asked about have no rule, and at 16 bits per name
/// the bits of a 100,000-rule table (256 KiB) stay in cache where the table
/// itself does not, so most of `decide`'s lookups end here. A set bit only
/// sends the lookup on to the table: a name an attacker picks to collide
/// costs the table lookup every name cost before. Deleted names keep their
/// bit until the bits are rebuilt (more lookups, never a missed rule).
#[derive(Debug, Default, Clone)]
struct Named {
    bits: Vec<u64>,
    /// log2 of the number of bits (0: no bits yet, every name may have rules)
    log2: u32,
}

impl Named {
    const BITS_PER_NAME: usize = 16;

    fn hash(name: &str) -> u64 {
        // a multiply-rotate hash over 8-byte words; the bit index takes its high bits
        let mut h: u64 = 0x243f_6a88_85a3_08d3;
        let bytes = name.as_bytes();
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        let mut w = [0u8; 8];
        for (d, b) in w.iter_mut().zip(chunks.remainder()) {
            *d = *b;
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w) ^ (bytes.len() as u64) << 56).wrapping_mul(0x517c_c1b7_2722_0a95);
        h ^ (h >> 29)
    }

    fn index(&self, name: &str) -> (usize, u64) {
        let bit = Self::hash(name).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.log2);
        ((bit >> 6) as usize, 1u64 << (bit & 63))
    }

    /// Bits for `names` names (at least 64).
    fn sized(names: usize) -> Named {
        let log2 = (names.max(4) * Self::BITS_PER_NAME).next_power_of_two().trailing_zeros();
        Named { bits: vec![0; 1usize << (log2 - 6)], log2 }
    }

    fn capacity(&self) -> usize {
        if self.log2 == 0 {
            0
        } else {
            (1usize << self.log2) / Self::BITS_PER_NAME
        }
    }

    fn insert(&mut self, name: &str) {
        let (word, bit) = self.index(name);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }

    fn may_have(&self, name: &str) -> bool {
        if self.log2 == 0 {
            return true;
        }
        let (word, bit) = self.index(name);
        self.bits.get(word).is_none_or(|w| w & bit != 0)
    }
}

impl Policy {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn upsert(&mut self, name: String, rule: Rule) {
        if self.rules.len() >= self.named.capacity() {
            // twice the names it was sized for: rebuilt, so its bits stay sparse
            let mut named = Named::sized(2 * (self.rules.len() + 1));
            for n in self.rules.keys() {
                named.insert(n);
            }
            self.named = named;
        }
        self.named.insert(&name);
        let rules = self.rules.entry(name.into_boxed_str()).or_default();
        match rules
            .iter_mut()
            .find(|r| r.origin == rule.origin && r.scope == rule.scope && r.kind == rule.kind && r.action == rule.action)
        {
            // the same rule twice: it lasts as long as the longer-lived copy
            Some(r) => r.expires = if r.expires == 0 || rule.expires == 0 { 0 } else { r.expires.max(rule.expires) },
            None => {
                rules.push(rule);
                self.len += 1;
            }
        }
    }

    /// Removes every rule of `origin` in `scope` set on `name` (either match kind).
    fn delete(&mut self, name: &str, origin: Origin, scope: &Scope) {
        if let Some(rules) = self.rules.get_mut(name) {
            let before = rules.len();
            rules.retain(|r| !(r.origin == origin && &r.scope == scope));
            self.len -= before - rules.len();
            if rules.is_empty() {
                self.rules.remove(name);
            }
        }
    }

    /// Applies a feed body straight from its bytes, without holding its
    /// records in memory: a snapshot is built beside the current table and
    /// swapped in; a delta is checked whole first, then applied in place. A
    /// bad header, an old version or too many rules refuse the body and leave
    /// the table unchanged; a record that does not parse is skipped and
    /// counted ([`Applied::skipped`]), and the rest applies.
    pub fn apply_body(&mut self, body: &[u8], max_rules: usize) -> Result<Applied, String> {
        let head = parse_header(body).map_err(|e| e.to_string())?;
        if head.version <= self.version {
            return Err(format!("feed version {} is not newer than {} (replayed or stale)", head.version, self.version));
        }
        let parsed = match head.kind {
            FeedKind::Snapshot => {
                let mut next = Policy { version: head.version, generated: head.generated, ..Policy::default() };
                let parsed = for_each_change(body, max_rules, |c| next.change(c)).map_err(|e| e.to_string())?;
                *self = next;
                parsed
            }
            FeedKind::Delta => {
                if head.base != self.version {
                    return Err(format!("delta from {} does not apply to version {}", head.base, self.version));
                }
                let mut upserts = 0usize;
                for_each_change(body, max_rules, |c| upserts += usize::from(matches!(c, Change::Upsert { .. })))
                    .map_err(|e| e.to_string())?;
                if self.len + upserts > max_rules {
                    return Err(format!("policy would exceed max_rules {max_rules}"));
                }
                let parsed = for_each_change(body, max_rules, |c| self.change(c)).map_err(|e| e.to_string())?;
                self.version = head.version;
                self.generated = head.generated;
                parsed
            }
        };
        Ok(Applied { kind: head.kind, skipped: parsed.skipped, first_skip: parsed.first_skip.map(|e| e.to_string()) })
    }

    fn change(&mut self, change: Change) {
        match change {
            Change::Upsert { name, rule } => self.upsert(name, rule),
            Change::Delete { origin, scope, name } => self.delete(&name, origin, &scope),
        }
    }

    /// The table as a snapshot body (what the elected poller stores in shared
    /// data after a delta), rules grouped by everything but their name.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut groups: BTreeMap<(Origin, String, u8, &'static str, u64), Vec<&str>> = BTreeMap::new();
        for (name, rules) in &self.rules {
            for r in rules {
                let kind = u8::from(r.kind == MatchKind::Suffix);
                groups.entry((r.origin, r.scope.text(), kind, r.action.as_str(), r.expires)).or_default().push(name);
            }
        }
        let mut out = format!("dnsguard-policy/1\tsnapshot\t{}\t0\t{}\n", self.version, self.generated);
        for ((origin, scope, kind, action, expires), mut names) in groups {
            let origin = if origin == Origin::Operator { "o" } else { "d" };
            let kind = if kind == 1 { "s" } else { "e" };
            out.push_str(&format!("@\t{origin}\t{scope}\t{kind}\t{action}\t{expires}\n"));
            names.sort_unstable();
            for name in names {
                out.push('\t');
                out.push_str(if name.is_empty() { "." } else { name });
                out.push('\n');
            }
        }
        out.into_bytes()
    }

    /// The decision for `qname` (lower-case, no trailing dot) asked by
    /// `workload` in `namespace` at `now_s`, or None if no rule applies. One
    /// hash lookup per label of the name, plus one for the root (where
    /// default-deny scopes keep their catch-all rule).
    pub fn decide<'a>(&'a self, qname: &'a str, namespace: &str, workload: &str, now_s: u64) -> Option<Decision<'a>> {
        if self.rules.is_empty() {
            return None;
        }
        let qname = qname.strip_suffix('.').unwrap_or(qname);
        // best candidate of each origin by (scope, name length, action precedence)
        let mut operator: Option<((u8, usize, u8), Decision<'a>)> = None;
        let mut detector: Option<((u8, usize, u8), Decision<'a>)> = None;
        let mut consider = |suffix: &'a str| {
            if !self.named.may_have(suffix) {
                return;
            }
            let Some(rules) = self.rules.get(suffix) else { return };
            let exact = suffix.len() == qname.len();
            for r in rules {
                if !(exact || r.kind == MatchKind::Suffix) || !r.scope.applies(namespace, workload) || !r.live(now_s) {
                    continue;
                }
                let d = Decision { action: r.action, rule: r, name: suffix };
                match r.origin {
                    Origin::Operator => {
                        let rank = (r.scope.specificity(), suffix.len(), r.action.precedence());
                        if operator.as_ref().is_none_or(|(best, _)| rank > *best) {
                            operator = Some((rank, d));
                        }
                    }
                    Origin::Detector => {
                        let rank = (r.scope.specificity(), suffix.len(), r.action.precedence());
                        if detector.as_ref().is_none_or(|(best, _)| rank > *best) {
                            detector = Some((rank, d));
                        }
                    }
                }
            }
        };
        let mut suffix = qname;
        loop {
            consider(suffix);
            match suffix.split_once('.') {
                Some((_, rest)) if !rest.is_empty() => suffix = rest,
                _ => break,
            }
        }
        if !qname.is_empty() {
            consider(ROOT);
        }
        match operator {
            // an operator block or allow decides outright
            Some((_, d)) if d.action.blocks() || d.action == Action::Allow => Some(d),
            // an operator log/shadow mark yields to a detector block
            Some((_, d)) => Some(detector.map(|(_, x)| x).filter(|x| x.action.blocks()).unwrap_or(d)),
            None => detector.map(|(_, d)| d),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::feed::parse_feed;

    fn policy(lines: &str) -> Policy {
        let body = format!("dnsguard-policy/1\tsnapshot\t5\t0\t100\n{lines}");
        let mut p = Policy::default();
        p.apply_body(body.as_bytes(), 1000).unwrap();
        p
    }

    fn act(p: &Policy, name: &str, ns: &str) -> Option<&'static str> {
        p.decide(name, ns, "web", 1_000).map(|d| d.action.as_str())
    }

    #[test]
    fn exact_and_suffix_matching() {
        let p = policy("+\td\t*\ts\tnxdomain\t0\tbad.example\n+\td\t*\te\trefused\t0\tonly.example\n");
        assert_eq!(act(&p, "bad.example", "a"), Some("nxdomain"));
        assert_eq!(act(&p, "x.y.bad.example", "a"), Some("nxdomain"));
        assert_eq!(act(&p, "notbad.example", "a"), None);
        assert_eq!(act(&p, "only.example", "a"), Some("refused"));
        assert_eq!(act(&p, "sub.only.example", "a"), None);
        assert_eq!(act(&p, "example", "a"), None);
        assert_eq!(act(&p, "bad.example.", "a"), Some("nxdomain"));
    }

    #[test]
    fn namespace_scope_applies_only_there() {
        let p = policy("+\td\tns:shop\ts\tnxdomain\t0\tbad.example\n");
        assert_eq!(act(&p, "bad.example", "shop"), Some("nxdomain"));
        assert_eq!(act(&p, "bad.example", "payments"), None);
    }

    #[test]
    fn expired_rules_stop_applying() {
        let p = policy("+\td\t*\ts\tnxdomain\t1000\told.example\n+\td\t*\ts\tnxdomain\t1001\tnew.example\n");
        assert_eq!(act(&p, "old.example", "a"), None);
        assert_eq!(act(&p, "new.example", "a"), Some("nxdomain"));
    }

    #[test]
    fn operator_allow_beats_detector_and_operator_block_beats_allow() {
        let p = policy(concat!(
            "+\td\t*\ts\tnxdomain\t0\tcdn.example\n",
            "+\to\tns:shop\ts\tallow\t0\tcdn.example\n",
            "+\to\t*\ts\tallow\t0\tpartner.example\n",
            "+\to\t*\te\tnxdomain\t0\tpartner.example\n",
            "+\to\tns:shop\te\trefused\t0\tlocal.example\n",
            "+\to\t*\ts\tallow\t0\tlocal.example\n",
            "+\to\t*\ts\tlog\t0\tsaas.example\n",
            "+\td\t*\ts\tnxdomain\t0\tevil.saas.example\n",
        ));
        assert_eq!(act(&p, "a.cdn.example", "shop"), Some("allow"));
        assert_eq!(act(&p, "a.cdn.example", "other"), Some("nxdomain"));
        assert_eq!(act(&p, "partner.example", "x"), Some("nxdomain"));
        assert_eq!(act(&p, "www.partner.example", "x"), Some("allow"));
        assert_eq!(act(&p, "local.example", "shop"), Some("refused"));
        assert_eq!(act(&p, "local.example", "other"), Some("allow"));
        assert_eq!(act(&p, "app.saas.example", "x"), Some("log"));
        assert_eq!(act(&p, "evil.saas.example", "x"), Some("nxdomain"));
    }

    #[test]
    fn namespace_detector_verdict_beats_global_and_longer_name_wins() {
        let p = policy("+\td\t*\ts\tshadow\t0\tx.example\n+\td\tns:a\ts\trefused\t0\tx.example\n+\td\t*\ts\tnxdomain\t0\ty.x.example\n");
        assert_eq!(act(&p, "x.example", "a"), Some("refused"));
        assert_eq!(act(&p, "x.example", "b"), Some("shadow"));
        assert_eq!(act(&p, "z.y.x.example", "b"), Some("nxdomain"));
        assert_eq!(p.decide("z.y.x.example", "b", "web", 0).unwrap().name, "y.x.example");
    }

    #[test]
    fn deltas_apply_in_order_and_versions_only_move_forward() {
        let mut p = policy("+\td\t*\ts\tnxdomain\t0\ta.example\n+\td\t*\ts\tnxdomain\t0\tb.example\n");
        assert_eq!(p.len(), 2);
        let delta = b"dnsguard-policy/1\tdelta\t7\t5\t200\n-\td\t*\ta.example\n+\td\tns:q\ts\trefused\t0\tc.example\n";
        p.apply_body(delta, 10).unwrap();
        assert_eq!((p.version, p.len()), (7, 2));
        assert_eq!(act(&p, "a.example", "q"), None);
        assert_eq!(act(&p, "c.example", "q"), Some("refused"));
        // replaying the same delta, an older snapshot, or a delta from another base is refused
        assert!(p.apply_body(delta, 10).is_err());
        let old = b"dnsguard-policy/1\tsnapshot\t6\t0\t0\n";
        assert!(p.apply_body(old, 10).unwrap_err().contains("not newer"));
        let gap = b"dnsguard-policy/1\tdelta\t9\t8\t0\n";
        assert!(p.apply_body(gap, 10).unwrap_err().contains("does not apply"));
        assert_eq!(p.version, 7);
    }

    #[test]
    fn workload_scope_and_default_deny() {
        let p = policy(concat!(
            "@\to\tns:payments\ts\tnxdomain\t0\n\t.\n",
            "+\to\tns:payments\ts\tallow\t0\tstripe.com\n",
            "+\to\tns:payments\te\trefused\t0\tevil.stripe.com\n",
            "+\to\twl:payments/batch\ts\tallow\t0\tpypi.org\n",
            "+\td\t*\ts\tnxdomain\t0\tapi.stripe.com\n",
        ));
        let d = |name: &str, wl: &str| p.decide(name, "payments", wl, 1_000).map(|d| d.action.as_str());
        assert_eq!(d("api.stripe.com", "web"), Some("allow")); // operator allow keeps the detector off
        assert_eq!(d("evil.stripe.com", "web"), Some("refused")); // the longer name wins
        assert_eq!(d("example.org", "web"), Some("nxdomain")); // default-deny
        assert_eq!(d("pypi.org", "web"), Some("nxdomain"));
        assert_eq!(d("files.pypi.org", "batch"), Some("allow")); // workload scope
        assert_eq!(p.decide("example.org", "shop", "web", 1_000), None); // other namespaces: default-allow
        assert_eq!(p.decide("api.stripe.com", "shop", "web", 1_000).map(|d| d.action.as_str()), Some("nxdomain"));
    }

    #[test]
    fn grouped_bodies_and_applying_from_bytes() {
        let body = b"dnsguard-policy/1\tsnapshot\t3\t0\t9\n@\td\tns:shop\ts\trefused\t0\n\ta.example\n\tb.example\n+\to\t*\te\tallow\t0\tc.example\n";
        let mut p = Policy::default();
        assert_eq!(p.apply_body(body, 10).unwrap().kind, FeedKind::Snapshot);
        assert_eq!((p.version, p.len()), (3, 3));
        assert_eq!(act(&p, "x.b.example", "shop"), Some("refused"));
        // the same body again, a delta from elsewhere, or too many rules: refused, table unchanged
        assert!(p.apply_body(body, 10).unwrap_err().contains("not newer"));
        assert!(p.apply_body(b"dnsguard-policy/1\tdelta\t5\t4\t0\n", 10).unwrap_err().contains("does not apply"));
        let grow = b"dnsguard-policy/1\tdelta\t4\t3\t0\n+\td\t*\ts\tnxdomain\t0\td.example\n";
        assert!(p.apply_body(grow, 3).unwrap_err().contains("max_rules"));
        let bad_header = b"dnsguard-policy/1\tdelta\tfour\t3\t0\n-\td\tns:shop\ta.example\n";
        assert!(p.apply_body(bad_header, 10).is_err());
        assert_eq!((p.version, p.len()), (3, 3));
        assert_eq!(p.apply_body(grow, 10).unwrap().kind, FeedKind::Delta);
        assert_eq!((p.version, p.len()), (4, 4));
        let lost = parse_feed(b"dnsguard-policy/1\tsnapshot\t1\t0\t0\n\tlost.example\n", 10).unwrap();
        assert!(lost.changes.is_empty() && lost.first_skip.unwrap().reason.contains("outside"));
    }

    #[test]
    fn names_with_rules_are_always_looked_up_and_most_others_are_not() {
        let lines: String = (0..20_000).map(|i| format!("+\td\t*\t{}\tnxdomain\t0\tn{i}.rules.example\n", if i % 3 == 0 { "s" } else { "e" })).collect();
        let body = format!("dnsguard-policy/1\tsnapshot\t5\t0\t100\n{lines}");
        let mut p = Policy::default();
        p.apply_body(body.as_bytes(), 20_000).unwrap();
        assert_eq!(p.len(), 20_000);
        // no name with rules is ever passed over (the bits grew and were rebuilt on the way)
        assert!((0..20_000).all(|i| p.named.may_have(&format!("n{i}.rules.example"))));
        assert!((0..20_000).all(|i| act(&p, &format!("n{i}.rules.example"), "shop") == Some("nxdomain")));
        assert_eq!(act(&p, "x.n0.rules.example", "shop"), Some("nxdomain")); // suffix rule
        // names without rules rarely reach the table
        let passed = (0..20_000).filter(|i| p.named.may_have(&format!("q{i}.other.example"))).count();
        assert!(passed < 20_000 / 10, "{passed} of 20000 names without rules reached the table");
    }

    #[test]
    fn snapshot_round_trips() {
        let p = policy("+\to\tns:shop\te\tsinkhole\t99\ta.example\n+\td\t*\ts\tnxdomain\t0\tb.example\n");
        let mut q = Policy::default();
        q.apply_body(&p.to_snapshot(), 10).unwrap();
        assert_eq!(q.to_snapshot(), p.to_snapshot());
        assert_eq!((q.version, q.generated, q.len()), (5, 100, 2));
    }

    #[test]
    fn malformed_headers_refuse_the_body() {
        for body in [
            &b""[..],
            b"nope\tsnapshot\t1\t0\t0\n",
            b"dnsguard-policy/1\tsnapshot\tx\t0\t0\n",
            b"dnsguard-policy/1\tdelta\t3\t3\t0\n",
            b"dnsguard-policy/1\tsnapshot\t1\t0\t0\textra\n",
            b"\xff\xfe",
        ] {
            assert!(parse_feed(body, 10).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let many = format!("dnsguard-policy/1\tsnapshot\t1\t0\t0\n{}", "+\td\t*\ts\tnxdomain\t0\ta.example\n".repeat(3));
        assert!(parse_feed(many.as_bytes(), 2).unwrap_err().reason.contains("more than 2"));
    }

    #[test]
    fn a_bad_record_is_skipped_and_counted_and_the_rest_applies() {
        let bad: [(&str, usize); 12] = [
            ("-\td\t*\ta.example\n", 2), // a snapshot cannot delete
            ("+\td\t*\ts\tdrop\t0\ta.example\n", 2),
            ("+\td\tns:\ts\tnxdomain\t0\ta.example\n", 2),
            ("+\td\tns:Shop\ts\tnxdomain\t0\ta.example\n", 2),
            ("+\td\tns:sh\top\ts\tnxdomain\t0\ta.example\n", 2),
            ("\n+\td\t*\ts\tnxdomain\t0\tA.example\n", 3),
            ("+\td\t*\ts\tnxdomain\t0\ta..example\n", 2),
            ("+\td\t*\ts\tnxdomain\t0\ta b.example\n", 2),
            ("\tlost.example\n", 2), // a name line outside a group
            ("@\td\tns:\ts\tnxdomain\t0\n\tx.example\n\ty.example\n", 2),
            ("+\td\t*\ts\tnxdomain\t0\t*.example\n", 2), // '*' is written \042
            ("+\td\t*\ts\tnxdomain\t0\t.\n", 2),         // a detector verdict never targets the root
        ];
        for (record, line) in bad {
            let body = format!("dnsguard-policy/1\tsnapshot\t1\t0\t0\n{record}+\td\tns:shop\ts\tnxdomain\t0\tgood.example\n");
            let feed = parse_feed(body.as_bytes(), 10).unwrap();
            assert!(feed.skipped >= 1, "{record:?}");
            assert_eq!(feed.first_skip.as_ref().map(|e| e.line), Some(line), "{record:?}");
            let mut p = Policy::default();
            let applied = p.apply_body(body.as_bytes(), 10).unwrap();
            assert_eq!(applied.skipped, feed.skipped);
            assert_eq!(act(&p, "good.example", "shop"), Some("nxdomain"), "{record:?}");
            assert_eq!(p.version, 1);
        }
        // what a verdict name carrying TAB and newline once wrote into a signed snapshot:
        // the root rule it smuggled in is skipped; an operator's default-deny on the root stays valid
        let forged = "dnsguard-policy/1\tsnapshot\t2\t0\t0\n+\td\t*\ts\tnxdomain\t0\tzz\n+\td\t*\ts\tnxdomain\t0\t.\n@\to\tns:shop\ts\tnxdomain\t0\n\t.\n";
        let feed = parse_feed(forged.as_bytes(), 10).unwrap();
        assert_eq!(feed.skipped, 1);
        assert_eq!(feed.changes.len(), 2);
        let mut p = Policy::default();
        p.apply_body(forged.as_bytes(), 10).unwrap();
        assert_eq!(act(&p, "www.google.com", "other"), None);
        assert_eq!(act(&p, "www.google.com", "shop"), Some("nxdomain"));
    }
}
