//! What the filter does with each DNS message it sees: parse, decide, pair, emit.
//! A parse error is counted and the bytes pass through unchanged; a query the
//! policy blocks is answered by the filter ([`Outcome::Answer`]).

use std::rc::Rc;

use dnsflow::{decide_query, QueryOutcome};
use dnswire::parse_message;

use crate::event::{Client, QueryInfo, ResponseInfo};
use crate::state::{self, now_micros, Pending, Stat};

/// What happens to a query.
pub enum Outcome {
    /// Goes to the resolver (allowed, shadowed, marked, or not DNS we understand).
    Forward,
    /// Answered locally with these bytes; the resolver never sees it.
    Answer(Vec<u8>),
}

/// `enforce`: this plugin has a policy feed (plugins sharing a VM share its
/// policy, but only those configured with a feed act on it).
pub fn on_query(ctx: u32, bytes: &[u8], client: &Rc<Client>, transport: &'static str, enforce: bool) -> Outcome {
    let msg = match parse_message(bytes) {
        Ok(m) if !m.header.qr() => m,
        Ok(_) => return Outcome::Forward, // a response travelling downstream->upstream: not ours to pair
        Err(_) => {
            state::with(|vm| vm.count(Stat::ParseErrors, 1));
            return Outcome::Forward;
        }
    };
    let Some(q) = msg.questions.first() else {
        state::with(|vm| vm.count(Stat::ParseErrors, 1));
        return Outcome::Forward;
    };
    let now = now_micros();
    state::with(|vm| {
        vm.tally(Stat::Queries);
        let version = vm.policy.version;
        let policy = enforce.then_some(&vm.policy);
        let outcome = decide_query(bytes, &msg, policy, &client.namespace, &client.workload, now / 1_000_000, &vm.sinkhole);
        let mut pending = Pending {
            query: QueryInfo::from_message(&msg, q),
            client: Rc::clone(client),
            transport,
            start_micros: now,
            action: "allowed",
            policy_version: version,
        };
        match outcome {
            QueryOutcome::Forward => {
                vm.add_pending(ctx, pending, now);
                Outcome::Forward
            }
            QueryOutcome::Shadow => {
                vm.count(Stat::Shadowed, 1);
                pending.action = "shadow";
                vm.add_pending(ctx, pending, now);
                Outcome::Forward
            }
            QueryOutcome::Answer(answer) => {
                vm.count(Stat::Blocked, 1);
                if let Ok(parsed) = parse_message(&answer) {
                    let info = ResponseInfo::from_message(parsed, vm.max_answers);
                    vm.emit_as(&pending, Some(&info), now, "blocked");
                }
                Outcome::Answer(answer)
            }
            QueryOutcome::Drop => {
                // cannot build an answer (a question we cannot copy): it still must not go upstream
                vm.count(Stat::BlockedDropped, 1);
                Outcome::Answer(Vec::new())
            }
        }
    })
}

pub fn on_response(ctx: u32, bytes: &[u8]) {
    let msg = match parse_message(bytes) {
        Ok(m) if m.header.qr() => m,
        Ok(_) => return,
        Err(_) => {
            state::with(|vm| vm.count(Stat::ParseErrors, 1));
            return;
        }
    };
    let now = now_micros();
    state::with(|vm| {
        vm.tally(Stat::Responses);
        if let Some(p) = vm.take_pending(ctx, msg.header.id) {
            let same_question = msg.questions.first().is_none_or(|q| q.name == p.query.name);
            if same_question {
                let response = ResponseInfo::from_message(msg, vm.max_answers);
                vm.emit(&p, Some(&response), now);
            } else {
                // an answer to a different question under the same id: keep the query waiting
                vm.add_pending(ctx, p, now);
            }
        }
    });
}

pub fn on_close(ctx: u32) {
    let now = now_micros();
    state::with(|vm| vm.close_context(ctx, now));
}
