//! The rule vocabulary shared by the feed parser and the table: actions,
//! match kinds, origins, scopes and rules. A leaf module: it imports nothing
//! of this crate.

use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nxdomain,
    Refused,
    Sinkhole,
    /// Observe only: the event is marked, the query goes upstream.
    Shadow,
    Allow,
    /// Mark the event (e.g. shadow-IT reporting) without blocking.
    Log,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "nxdomain" => Action::Nxdomain,
            "refused" => Action::Refused,
            "sinkhole" => Action::Sinkhole,
            "shadow" => Action::Shadow,
            "allow" => Action::Allow,
            "log" => Action::Log,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Nxdomain => "nxdomain",
            Action::Refused => "refused",
            Action::Sinkhole => "sinkhole",
            Action::Shadow => "shadow",
            Action::Allow => "allow",
            Action::Log => "log",
        }
    }

    /// Answered by the filter instead of the upstream resolver.
    pub fn blocks(self) -> bool {
        matches!(self, Action::Nxdomain | Action::Refused | Action::Sinkhole)
    }

    /// At equal specificity the higher one wins. A total order, so a decision
    /// never depends on the order rules arrive in the feed.
    pub fn precedence(self) -> u8 {
        match self {
            Action::Nxdomain => 5,
            Action::Refused => 4,
            Action::Sinkhole => 3,
            Action::Allow => 2,
            Action::Log | Action::Shadow => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Suffix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Operator,
    Detector,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Namespace(Arc<str>),
    /// (namespace, workload)
    Workload(Arc<str>, Arc<str>),
}

/// The key of rules set on the root ("."): they cover every name. A
/// default-deny scope is a catch-all blocking rule there, which any more
/// specific allow outranks.
pub const ROOT: &str = "";

impl Scope {
    pub(crate) fn applies(&self, namespace: &str, workload: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Namespace(ns) => &**ns == namespace,
            Scope::Workload(ns, wl) => &**ns == namespace && &**wl == workload,
        }
    }
    pub(crate) fn specificity(&self) -> u8 {
        match self {
            Scope::Global => 0,
            Scope::Namespace(_) => 1,
            Scope::Workload(..) => 2,
        }
    }
    pub fn text(&self) -> String {
        match self {
            Scope::Global => "*".into(),
            Scope::Namespace(ns) => format!("ns:{ns}"),
            Scope::Workload(ns, wl) => format!("wl:{ns}/{wl}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub origin: Origin,
    pub scope: Scope,
    pub kind: MatchKind,
    pub action: Action,
    /// Epoch seconds after which the rule stops applying; 0 = never.
    pub expires: u64,
}

impl Rule {
    pub(crate) fn live(&self, now_s: u64) -> bool {
        self.expires == 0 || now_s < self.expires
    }
}


/// A Kubernetes namespace name: a DNS-1123 label (1 to 63 of `[a-z0-9-]`,
/// alphanumeric at both ends). The same rule as `detectors/identity.py`.
pub fn valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// A Kubernetes object name such as a workload: a DNS-1123 subdomain (labels
/// as [`valid_namespace`], dot-separated, at most 253 characters).
pub fn valid_object_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(valid_namespace)
}

impl Scope {
    /// `*`, `ns:<namespace>` or `wl:<namespace>/<workload>` with valid names.
    pub fn parse(s: &str) -> Option<Scope> {
        if s == "*" {
            return Some(Scope::Global);
        }
        if let Some(ns) = s.strip_prefix("ns:") {
            return valid_namespace(ns).then(|| Scope::Namespace(Arc::from(ns)));
        }
        let (ns, wl) = s.strip_prefix("wl:")?.split_once('/')?;
        (valid_namespace(ns) && valid_object_name(wl)).then(|| Scope::Workload(ns.into(), wl.into()))
    }
}
