//! Parsing the feed body (format in the crate docs). Strict: any line that
//! does not parse rejects the whole body, with its line number.

use crate::policy::{Action, MatchKind, Origin, Rule, Scope};

/// Longest name accepted in a feed line (a DNS name in text form).
pub const MAX_LINE_NAME: usize = 253;
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
        return Ok(crate::policy::ROOT.to_string()); // the root: every name
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    let ok = !s.is_empty()
        && s.len() <= MAX_LINE_NAME
        && s.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && s.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase());
    if ok {
        Ok(s.to_string())
    } else {
        err(line, format!("invalid name {s:?} (lower-case, labels 1..=63, total <= {MAX_LINE_NAME})"))
    }
}

fn scope(line: usize, s: Option<&str>) -> Result<Scope, FeedError> {
    match s {
        Some("*") => Ok(Scope::Global),
        Some(s) => {
            if let Some(ns) = s.strip_prefix("ns:").filter(|ns| !ns.is_empty() && !ns.contains('/')) {
                return Ok(Scope::Namespace(std::rc::Rc::from(ns)));
            }
            match s.strip_prefix("wl:").and_then(|w| w.split_once('/')) {
                Some((ns, wl)) if !ns.is_empty() && !wl.is_empty() => Ok(Scope::Workload(ns.into(), wl.into())),
                _ => err(line, format!("invalid scope {s:?} (expected *, ns:<namespace> or wl:<namespace>/<workload>)")),
            }
        }
        None => err(line, "missing scope"),
    }
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

/// Parses a feed body, handing each record to `each` in order; at most
/// `max_changes` records. Nothing is collected, so a body of millions of
/// rules costs no more than the table it fills.
///
/// Besides `+` and `-` lines, a body may group rules that share everything
/// but the name: `@ <origin> <scope> <match> <action> <expires>` starts a group
/// and each following `<TAB><name>` line is one rule of it.
pub fn for_each_change(body: &[u8], max_changes: usize, mut each: impl FnMut(Change)) -> Result<Header, FeedError> {
    let Ok(text) = std::str::from_utf8(body) else { return err(0, "body is not UTF-8") };
    let mut lines = text.split('\n').enumerate();
    let Some((_, first)) = lines.next() else { return err(1, "empty body") };
    let head = header(first)?;
    let mut group: Option<Rule> = None;
    let mut count = 0usize;
    for (i, line) in lines {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('\t') {
            let Some(rule) = &group else { return err(n, "a name line outside an @ group") };
            count += 1;
            if count > max_changes {
                return err(n, format!("more than {max_changes} records"));
            }
            each(Change::Upsert { name: name(n, Some(rest))?, rule: rule.clone() });
            continue;
        }
        let mut f = line.split('\t');
        let change = match f.next() {
            Some("@") => {
                group = Some(rule_fields(n, &mut f)?);
                if f.next().is_some() {
                    return err(n, "extra fields");
                }
                continue;
            }
            Some("+") => {
                let rule = rule_fields(n, &mut f)?;
                Change::Upsert { name: name(n, f.next())?, rule }
            }
            Some("-") if head.kind == FeedKind::Delta => {
                let origin = origin(n, f.next())?;
                let scope = scope(n, f.next())?;
                Change::Delete { origin, scope, name: name(n, f.next())? }
            }
            Some("-") => return err(n, "a snapshot cannot delete"),
            other => return err(n, format!("unknown record {other:?}")),
        };
        if f.next().is_some() {
            return err(n, "extra fields");
        }
        count += 1;
        if count > max_changes {
            return err(n, format!("more than {max_changes} records"));
        }
        each(change);
    }
    Ok(head)
}

/// Parses a whole feed body into memory (see [`for_each_change`] for large ones).
pub fn parse_feed(body: &[u8], max_changes: usize) -> Result<Feed, FeedError> {
    let mut changes = Vec::new();
    let h = for_each_change(body, max_changes, |c| changes.push(c))?;
    Ok(Feed { kind: h.kind, version: h.version, base: h.base, generated: h.generated, changes })
}
