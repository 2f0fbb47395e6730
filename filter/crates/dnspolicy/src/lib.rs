//! The dnsguard policy as the filter holds it: the feed wire format (signed
//! snapshots and deltas), the compiled rule table, and the matcher.
//!
//! Feed body (UTF-8 text, one record per line, fields separated by TAB):
//!
//! ```text
//! dnsguard-policy/1  <snapshot|delta>  <version>  <base>  <generated>
//! +  <origin>  <scope>  <match>  <action>  <expires>  <name>
//! -  <origin>  <scope>  <name>
//! @  <origin>  <scope>  <match>  <action>  <expires>     (then one TAB-indented name per line)
//! ```
//!
//! `origin` is `o` (operator rule) or `d` (detector verdict); `scope` is `*`
//! (global), `ns:<namespace>` or `wl:<namespace>/<workload>`; a name of `.` is
//! the root (a default-deny scope's catch-all); `match` is `e` (exact name) or `s` (the name
//! and everything under it); `expires` is epoch seconds, 0 for never. A
//! snapshot holds `+` lines only and replaces the table; a delta applies to
//! the table at version `base`. A rule is identified by (origin, scope,
//! match, action, name); a `-` line removes the origin's rules on the name in that
//! scope, so a changed entry travels as `-` then `+`. The body is authenticated by an HMAC-SHA256
//! signature carried beside it ([`verify`]).
//!
//! Matching walks the query name's suffixes from the full name to the TLD,
//! one hash lookup per label, and decides by the documented precedence
//! ([`Policy::decide`]).

#![forbid(unsafe_code)]

mod base64;
mod feed;
mod policy;
mod rules;
mod sign;

pub use base64::decode as base64_decode;
pub use feed::{for_each_change, parse_feed, parse_header, Change, Feed, FeedError, FeedKind, Header, Parsed, MAX_LINE_NAME};
pub use policy::{Applied, Decision, Policy};
pub use rules::{valid_namespace, valid_object_name, Action, MatchKind, Origin, Rule, Scope, ROOT};
pub use sign::{verify, PublicKey, SignatureError};
