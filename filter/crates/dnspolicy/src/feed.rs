//! Parsing the feed body (format in the crate docs).
//!
//! The header must be right or the body is refused. After it, each record is
//! checked on its own: one that does not parse (an unknown record type, a
//! name that is not canonical, a bad scope or action) is skipped and counted,
//! and the rest of the body still applies. The body's signature was verified
//! over the whole of it before parsing, so a skipped record is the feed
//! server's mistake, not an attacker's, and it must not freeze every filter
//! on an old policy.

use dnswire::presentation::is_canonical_name;

use crate::rules::{Action, MatchKind, Origin, Rule, Scope, ROOT};

/// Longest name accepted in a feed line (a DNS name in canonical form).
pub const MAX_LINE_NAME: usize = 4 * 253;
const MAGIC: &str = "dnsguard-policy/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    Snapshot,
    Delta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert { name: String, rule: Rule },
    Delete { origin: Origin, scope: Scope, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub kind: FeedKind,
    pub version: u64,
    /// The version a delta applies to (0 for snapshots).
    pub base: u64,
    /// When the feed server produced the body (epoch seconds).
    pub generated: u64,
    pub changes: Vec<Change>,
    /// Records that did not parse and were skipped, and the first reason.
    pub skipped: usize,
    pub first_skip: Option<FeedError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "feed line {}: {}", self.line, self.reason)
    }
}

fn err<T>(line: usize, reason: impl Into<String>) -> Result<T, FeedError> {
    Err(FeedError { line, reason: reason.into() })
}

fn num(line: usize, s: Option<&str>, what: &str) -> Result<u64, FeedError> {
    match s.map(str::parse::<u64>) {
        Some(Ok(n)) => Ok(n),
        _ => err(line, format!("{what} must be an unsigned integer")),
    }
}

fn name(line: usize, s: Option<&str>) -> Result<String, FeedError> {
    let Some(s) = s else { return err(line, "missing name") };
    if s == "." {
        return Ok(ROOT.to_string()); // the root: every name
    }
    if !s.is_empty() && s.len() <= MAX_LINE_NAME && is_canonical_name(s) {
        Ok(s.to_string())
    } else {
        let shown: String = s.chars().take(80).collect();
        err(line, format!("invalid name {shown:?} (canonical form: lower-case, \\DDD escapes, labels 1..=63 octets)"))
    }
}

fn scope(line: usize, s: Option<&str>) -> Result<Scope, FeedError> {
    let Some(s) = s else { return err(line, "missing scope") };
    Scope::parse(s).map_or_else(
        || err(line, format!("invalid scope {s:?} (expected *, ns:<namespace> or wl:<namespace>/<workload>)")),
        Ok,
    )
}

fn origin(line: usize, s: Option<&str>) -> Result<Origin, FeedError> {
    match s {
        Some("o") => Ok(Origin::Operator),
        Some("d") => Ok(Origin::Detector),
        other => err(line, format!("invalid origin {other:?} (expected o or d)")),
    }
}

/// The first line of a feed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: FeedKind,
    pub version: u64,
    /// The version a delta applies to (0 for snapshots).
    pub base: u64,
    /// When the feed server produced the body (epoch seconds).
    pub generated: u64,
}

fn header(line: &str) -> Result<Header, FeedError> {
    let mut h = line.split('\t');
    if h.next() != Some(MAGIC) {
        return err(1, format!("not a {MAGIC} body"));
    }
    let kind = match h.next() {
        Some("snapshot") => FeedKind::Snapshot,
        Some("delta") => FeedKind::Delta,
        other => return err(1, format!("unknown feed kind {other:?}")),
    };
    let version = num(1, h.next(), "version")?;
    let base = num(1, h.next(), "base")?;
    let generated = num(1, h.next(), "generated")?;
    if h.next().is_some() {
        return err(1, "extra fields in header");
    }
    if kind == FeedKind::Delta && base >= version {
        return err(1, "a delta's base must be below its version");
    }
    Ok(Header { kind, version, base, generated })
}

fn rule_fields<'a>(n: usize, f: &mut impl Iterator<Item = &'a str>) -> Result<Rule, FeedError> {
    let origin = origin(n, f.next())?;
    let scope = scope(n, f.next())?;
    let kind = match f.next() {
        Some("e") => MatchKind::Exact,
        Some("s") => MatchKind::Suffix,
        other => return err(n, format!("invalid match {other:?} (expected e or s)")),
    };
    let Some(action) = f.next().and_then(Action::parse) else { return err(n, "invalid action") };
    let expires = num(n, f.next(), "expires")?;
    Ok(Rule { origin, scope, kind, action, expires })
}

/// Reads the header of a feed body.
pub fn parse_header(body: &[u8]) -> Result<Header, FeedError> {
    let Ok(text) = std::str::from_utf8(body) else { return err(0, "body is not UTF-8") };
    header(text.split('\n').next().unwrap_or_default())
}

/// What parsing a body found besides its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub header: Header,
    /// Records that did not parse and were skipped.
    pub skipped: usize,
    /// Why the first skipped record did not parse.
    pub first_skip: Option<FeedError>,
}

/// One line of the body after the header.
enum Line {
    Blank,
    /// `@ ...`: the rule of the names that follow (None: a group that did not parse)
    Group(Option<Rule>),
    Record(Change),
}

fn line(n: usize, text: &str, kind: FeedKind, group: Option<&Rule>) -> Result<Line, FeedError> {
    if text.is_empty() {
        return Ok(Line::Blank);
    }
    if let Some(rest) = text.strip_prefix('\t') {
        let Some(rule) = group else { return err(n, "a name line outside a valid @ group") };
        return upsert(n, name(n, Some(rest))?, rule.clone());
    }
    let mut f = text.split('\t');
    let change = match f.next() {
        Some("@") => {
            let rule = rule_fields(n, &mut f)?;
            if f.next().is_some() {
                return err(n, "extra fields");
            }
            return Ok(Line::Group(Some(rule)));
        }
        Some("+") => {
            let rule = rule_fields(n, &mut f)?;
            let name = name(n, f.next())?;
            if f.next().is_some() {
                return err(n, "extra fields");
            }
            return upsert(n, name, rule);
        }
        Some("-") if kind == FeedKind::Delta => {
            let origin = origin(n, f.next())?;
            let scope = scope(n, f.next())?;
            Change::Delete { origin, scope, name: name(n, f.next())? }
        }
        Some("-") => return err(n, "a snapshot cannot delete"),
        other => return err(n, format!("unknown record {:?}", other.map(|o| o.chars().take(16).collect::<String>()))),
    };
    if f.next().is_some() {
        return err(n, "extra fields");
    }
    Ok(Line::Record(change))
}

fn upsert(n: usize, name: String, rule: Rule) -> Result<Line, FeedError> {
    if name == ROOT && rule.origin == Origin::Detector {
        return err(n, "a detector verdict cannot target the root");
    }
    Ok(Line::Record(Change::Upsert { name, rule }))
}

/// Parses a feed body, handing each record to `each` in order; at most
/// `max_changes` records (more refuses the body). Nothing is collected, so a
/// body of millions of rules costs no more than the table it fills.
///
/// Besides `+` and `-` lines, a body may group rules that share everything
/// but the name: `@ <origin> <scope> <match> <action> <expires>` starts a group
/// and each following `<TAB><name>` line is one rule of it. A group line that
/// does not parse skips the names under it too.
pub fn for_each_change(body: &[u8], max_changes: usize, mut each: impl FnMut(Change)) -> Result<Parsed, FeedError> {
    let Ok(text) = std::str::from_utf8(body) else { return err(0, "body is not UTF-8") };
    let mut lines = text.split('\n').enumerate();
    let Some((_, first)) = lines.next() else { return err(1, "empty body") };
    let head = header(first)?;
    let mut group: Option<Rule> = None;
    let mut parsed = Parsed { header: head, skipped: 0, first_skip: None };
    let mut count = 0usize;
    for (i, text) in lines {
        let n = i + 1;
        match line(n, text, head.kind, group.as_ref()) {
            Ok(Line::Blank) => {}
            Ok(Line::Group(rule)) => group = rule,
            Ok(Line::Record(change)) => {
                count += 1;
                if count > max_changes {
                    return err(n, format!("more than {max_changes} records"));
                }
                each(change);
            }
            Err(e) => {
                if text.starts_with('@') {
                    group = None; // its names are skipped with it
                }
                parsed.skipped += 1;
                parsed.first_skip.get_or_insert(e);
            }
        }
    }
    Ok(parsed)
}

/// Parses a whole feed body into memory (see [`for_each_change`] for large ones).
pub fn parse_feed(body: &[u8], max_changes: usize) -> Result<Feed, FeedError> {
    let mut changes = Vec::new();
    let p = for_each_change(body, max_changes, |c| changes.push(c))?;
    let h = p.header;
    Ok(Feed {
        kind: h.kind,
        version: h.version,
        base: h.base,
        generated: h.generated,
        changes,
        skipped: p.skipped,
        first_skip: p.first_skip,
    })
}
