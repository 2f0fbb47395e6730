//! Queries waiting for their response, paired by (connection, transaction id).
//!
//! A host keeps one [`Pairing`] per worker (a proxy-wasm VM): each query that
//! goes to the resolver is [`Pairing::add`]ed, and the response with the same
//! id on the same connection [`Pairing::take`]s it back. Everything that leaves
//! the table without a response is handed back to the host to report as
//! unanswered: a query whose id was reused on the connection before an
//! answer, the oldest when the table is full, those of a connection that
//! closed ([`Pairing::close`]), and those older than the timeout
//! ([`Pairing::expire`]). The table is bounded; lookups are by key, and the
//! closing connection's queries are one range scan.

use std::collections::BTreeMap;

/// A waiting query's payload: the host's own (identity, question, decision), and when it was seen.
pub trait Waiting {
    fn start_micros(&self) -> u64;
}

/// The table of waiting queries (at most `max` of them).
pub struct Pairing<P> {
    max: usize,
    keys: BTreeMap<(u32, u16), u64>,
    entries: BTreeMap<u64, ((u32, u16), P)>,
    seq: u64,
}

impl<P: Waiting> Pairing<P> {
    pub fn new(max: usize) -> Pairing<P> {
        Pairing { max: max.max(1), keys: BTreeMap::new(), entries: BTreeMap::new(), seq: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Wait for the response to query `id` on connection `ctx`; returns the
    /// queries this displaced (unanswered): one with the same key, and the
    /// oldest while the table is full.
    pub fn add(&mut self, ctx: u32, id: u16, p: P) -> Vec<P> {
        let key = (ctx, id);
        let mut unanswered = Vec::new();
        if let Some(old) = self.keys.remove(&key).and_then(|seq| self.entries.remove(&seq)) {
            unanswered.push(old.1);
        }
        while self.entries.len() >= self.max {
            let Some((_, (k, old))) = self.entries.pop_first() else { break };
            self.keys.remove(&k);
            unanswered.push(old);
        }
        self.seq += 1;
        self.keys.insert(key, self.seq);
        self.entries.insert(self.seq, (key, p));
        unanswered
    }

    pub fn contains(&self, ctx: u32, id: u16) -> bool {
        self.keys.contains_key(&(ctx, id))
    }

    /// The query a response with `id` on `ctx` answers, if one waits.
    pub fn take(&mut self, ctx: u32, id: u16) -> Option<P> {
        let seq = self.keys.remove(&(ctx, id))?;
        self.entries.remove(&seq).map(|(_, p)| p)
    }

    /// Every query of connection `ctx` still waiting (it closed), oldest id first.
    pub fn close(&mut self, ctx: u32) -> Vec<P> {
        let ids: Vec<u16> = self.keys.range((ctx, 0)..=(ctx, u16::MAX)).map(|((_, id), _)| *id).collect();
        ids.into_iter().filter_map(|id| self.take(ctx, id)).collect()
    }

    /// The queries waiting for `timeout_us` or longer at `now` (oldest first).
    pub fn expire(&mut self, now: u64, timeout_us: u64) -> Vec<P> {
        let mut out = Vec::new();
        while let Some((_, (_, p))) = self.entries.first_key_value() {
            if now.saturating_sub(p.start_micros()) < timeout_us {
                break;
            }
            if let Some((_, (k, p))) = self.entries.pop_first() {
                self.keys.remove(&k);
                out.push(p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Q(&'static str, u64);

    impl Waiting for Q {
        fn start_micros(&self) -> u64 {
            self.1
        }
    }

    #[test]
    fn a_response_takes_its_query_by_connection_and_id() {
        let mut t = Pairing::new(8);
        assert!(t.add(1, 7, Q("a", 0)).is_empty());
        assert!(t.add(2, 7, Q("b", 0)).is_empty());
        assert!(t.contains(1, 7));
        assert_eq!(t.take(2, 7), Some(Q("b", 0)));
        assert_eq!(t.take(2, 7), None);
        assert_eq!(t.take(1, 8), None);
        assert_eq!(t.take(1, 7), Some(Q("a", 0)));
        assert!(t.is_empty());
    }

    #[test]
    fn a_reused_id_and_a_full_table_give_back_the_unanswered() {
        let mut t = Pairing::new(2);
        assert!(t.add(1, 7, Q("first", 0)).is_empty());
        assert_eq!(t.add(1, 7, Q("again", 1)), vec![Q("first", 0)]);
        assert!(t.add(1, 8, Q("b", 2)).is_empty());
        assert_eq!(t.add(1, 9, Q("c", 3)), vec![Q("again", 1)]); // the oldest goes
        assert_eq!(t.len(), 2);
        assert!(!t.contains(1, 7));
    }

    #[test]
    fn a_closed_connection_and_the_timeout_give_back_what_waits() {
        let mut t = Pairing::new(16);
        for (ctx, id, at) in [(1, 3, 10), (2, 1, 20), (1, 1, 30), (3, 9, 40)] {
            assert!(t.add(ctx, id, Q("q", at)).is_empty());
        }
        assert_eq!(t.close(1), vec![Q("q", 30), Q("q", 10)]); // by id
        assert_eq!(t.expire(45, 20), vec![Q("q", 20)]);
        assert_eq!(t.expire(45, 20), vec![]);
        assert_eq!(t.expire(60, 20), vec![Q("q", 40)]);
        assert!(t.is_empty());
    }
}
