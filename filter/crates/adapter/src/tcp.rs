//! Network filter: DNS over TCP and DoT (after Envoy terminated TLS).
//! Each direction has its own framer; several messages per read, messages
//! split across reads and pipelined queries answered out of order all work.
//!
//! Without a policy feed the filter only observes: bytes pass through as they
//! arrive. With one it enforces, and then forwards whole messages only (a
//! partial message waits in the framer until its last byte arrives, so a
//! blocked name never leaves even in part). Envoy's network-filter ABI cannot
//! write to the client on its own: a write happens only when upstream data
//! flows. So a blocked query is replaced by a placeholder query that reveals
//! nothing (the root's NS set, no recursion), and the placeholder's answer is
//! replaced by the filter's local answer on its way back, with the client's
//! transaction id and question.

use std::collections::HashMap;
use std::rc::Rc;

use dnswire::{placeholder_query, TcpFramer, MAX_DNS_MESSAGE};
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};

use crate::attribution;
use crate::dns::{self, Outcome};
use crate::event::Client;
use crate::state::{self, Stat};

/// Bytes buffered per direction at most (one maximal message plus its prefix, twice).
const MAX_BUFFER: usize = 2 * (2 + MAX_DNS_MESSAGE);
/// Reads are fed to the framer in slices this long, so a partial message plus
/// one slice always fits its buffer.
const SLICE: usize = MAX_DNS_MESSAGE + 1;
/// Local answers waiting for their placeholder's response, per connection.
const MAX_WAITING: usize = 256;

pub struct DnsTcp {
    id: u32,
    client: Option<Rc<Client>>,
    transport: &'static str,
    down: TcpFramer,
    up: TcpFramer,
    enforce: bool,
    /// placeholder transaction id -> the local answer that replaces its response
    waiting: HashMap<u16, Vec<u8>>,
    next_placeholder: u16,
}

fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

/// The response to a placeholder: QR set, one question for the root, type NS.
fn is_placeholder_response(msg: &[u8]) -> bool {
    matches!(msg, [_, _, f, _, 0, 1, _, _, _, _, _, _, 0, 0, 2, 0, 1, ..] if f & 0x80 != 0)
}

impl DnsTcp {
    pub fn new(id: u32, enforce: bool) -> Self {
        DnsTcp {
            id,
            client: None,
            transport: "tcp",
            down: TcpFramer::new(MAX_BUFFER),
            up: TcpFramer::new(MAX_BUFFER),
            enforce,
            waiting: HashMap::new(),
            next_placeholder: (id as u16).wrapping_mul(40_503),
        }
    }

    fn client(&mut self) -> Rc<Client> {
        if let Some(c) = &self.client {
            return Rc::clone(c);
        }
        let (client, tls) = attribution::client(self);
        let c = Rc::new(client);
        self.transport = if tls { "dot" } else { "tcp" };
        self.client = Some(Rc::clone(&c));
        c
    }

    fn placeholder_id(&mut self) -> u16 {
        loop {
            self.next_placeholder = self.next_placeholder.wrapping_add(1);
            let id = self.next_placeholder;
            if !self.waiting.contains_key(&id) && !state::with(|vm| vm.is_pending(self.id, id)) {
                return id;
            }
        }
    }

    /// Observe-only path: the bytes pass through untouched.
    fn observe_queries(&mut self, data: &[u8]) {
        if self.down.push(data).is_err() {
            state::with(|vm| vm.count(Stat::ParseErrors, 1));
            return;
        }
        let client = self.client();
        let transport = self.transport;
        while let Some(msg) = self.down.next_message() {
            dns::on_query(self.id, msg, &client, transport, false);
        }
    }

    /// Enforcing path: the whole messages to forward, blocked ones replaced by placeholders.
    fn enforce_queries(&mut self, data: &[u8]) -> Vec<u8> {
        let client = self.client();
        let transport = self.transport;
        let mut out = Vec::with_capacity(data.len() + 2);
        for slice in data.chunks(SLICE) {
            if self.down.push(slice).is_err() {
                state::with(|vm| vm.count(Stat::ParseErrors, 1));
                out.extend_from_slice(slice); // not DNS framing: nothing to enforce on
                continue;
            }
            let mut answers = Vec::new();
            while let Some(msg) = self.down.next_message() {
                match dns::on_query(self.id, msg, &client, transport, true) {
                    Outcome::Forward => frame(&mut out, msg),
                    Outcome::Answer(answer) => answers.push((out.len(), answer)),
                }
            }
            // placeholders are spliced in after the framer's borrow ends, in order
            for (at, answer) in answers.into_iter().rev() {
                if answer.is_empty() || self.waiting.len() >= MAX_WAITING {
                    state::with(|vm| vm.count(Stat::BlockedDropped, 1));
                    continue;
                }
                let pid = self.placeholder_id();
                let mut p = Vec::with_capacity(19);
                frame(&mut p, &placeholder_query(pid));
                out.splice(at..at, p);
                self.waiting.insert(pid, answer);
            }
        }
        out
    }

    /// Enforcing path, resolver side: whole messages, placeholder answers replaced.
    fn enforce_responses(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 2);
        for slice in data.chunks(SLICE) {
            if self.up.push(slice).is_err() {
                state::with(|vm| vm.count(Stat::ParseErrors, 1));
                out.extend_from_slice(slice);
                continue;
            }
            while let Some(msg) = self.up.next_message() {
                let id = match msg {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    _ => 0,
                };
                let local = if is_placeholder_response(msg) { self.waiting.remove(&id) } else { None };
                match local {
                    Some(answer) => frame(&mut out, &answer),
                    None => {
                        dns::on_response(self.id, msg);
                        frame(&mut out, msg);
                    }
                }
            }
        }
        out
    }
}

impl Context for DnsTcp {}

impl StreamContext for DnsTcp {
    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if data_size == 0 || self.down.is_poisoned() {
            return Action::Continue;
        }
        let Some(data) = self.get_downstream_data(0, data_size) else { return Action::Continue };
        if !self.enforce {
            self.observe_queries(&data);
            return Action::Continue;
        }
        let out = self.enforce_queries(&data);
        if out != data {
            self.set_downstream_data(0, data_size, &out);
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if data_size == 0 || self.up.is_poisoned() {
            return Action::Continue;
        }
        let Some(data) = self.get_upstream_data(0, data_size) else { return Action::Continue };
        if !self.enforce {
            if self.up.push(&data).is_err() {
                state::with(|vm| vm.count(Stat::ParseErrors, 1));
                return Action::Continue;
            }
            while let Some(msg) = self.up.next_message() {
                dns::on_response(self.id, msg);
            }
            return Action::Continue;
        }
        let out = self.enforce_responses(&data);
        if out != data {
            self.set_upstream_data(0, data_size, &out);
        }
        Action::Continue
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {
        dns::on_close(self.id);
    }

    fn on_log(&mut self) {
        dns::on_close(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::is_placeholder_response;

    #[test]
    fn recognises_placeholder_responses_only() {
        let mut r = dnswire::placeholder_query(9);
        assert!(!is_placeholder_response(&r)); // the query itself
        if let Some(flags) = r.get_mut(2) {
            *flags |= 0x80;
        }
        assert!(is_placeholder_response(&r));
        assert!(!is_placeholder_response(&[0, 9, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'c', b'o', b'm', 0, 0, 2, 0, 1]));
    }
}
