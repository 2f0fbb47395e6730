//! What the filter does with each DNS message it sees: parse, pair, emit.
//! Messages are only observed, never modified; a parse error is counted and
//! the bytes pass through unchanged.

use std::rc::Rc;

use dnswire::parse_message;

use crate::event::{Client, QueryInfo, ResponseInfo};
use crate::state::{self, now_micros, Pending, Stat};

pub fn on_query(ctx: u32, bytes: &[u8], client: &Rc<Client>, transport: &'static str) {
    let msg = match parse_message(bytes) {
        Ok(m) if !m.header.qr() => m,
        Ok(_) => return, // a response travelling downstream->upstream: not ours to pair
        Err(_) => {
            state::with(|vm| vm.count(Stat::ParseErrors, 1));
            return;
        }
    };
    let Some(q) = msg.questions.first() else {
        state::with(|vm| vm.count(Stat::ParseErrors, 1));
        return;
    };
    let now = now_micros();
    let pending = Pending { query: QueryInfo::from_message(&msg, q), client: Rc::clone(client), transport, start_micros: now };
    state::with(|vm| {
        vm.count(Stat::Queries, 1);
        vm.add_pending(ctx, pending, now);
    });
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
        vm.count(Stat::Responses, 1);
        if let Some(p) = vm.take_pending(ctx, msg.header.id) {
            let same_question = msg.questions.first().is_none_or(|q| q.name == p.query.name);
            if same_question {
                let response = ResponseInfo::from_message(&msg, vm.max_answers);
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
