//! Network filter: DNS over TCP and DoT (after Envoy terminated TLS).
//! Each direction has its own framer; several messages per read, messages
//! split across reads and pipelined queries answered out of order all work.

use std::rc::Rc;

use dnswire::TcpFramer;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};

use crate::attribution;
use crate::dns;
use crate::event::Client;
use crate::state::{self, Stat};

/// Bytes buffered per direction at most (one maximal message plus its prefix, twice).
const MAX_BUFFER: usize = 2 * (2 + 65_535);

pub struct DnsTcp {
    id: u32,
    client: Option<Rc<Client>>,
    transport: &'static str,
    down: TcpFramer,
    up: TcpFramer,
}

impl DnsTcp {
    pub fn new(id: u32) -> Self {
        DnsTcp { id, client: None, transport: "tcp", down: TcpFramer::new(MAX_BUFFER), up: TcpFramer::new(MAX_BUFFER) }
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
}

impl Context for DnsTcp {}

impl StreamContext for DnsTcp {
    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if data_size == 0 || self.down.is_poisoned() {
            return Action::Continue;
        }
        let Some(data) = self.get_downstream_data(0, data_size) else { return Action::Continue };
        if self.down.push(&data).is_err() {
            state::with(|vm| vm.count(Stat::ParseErrors, 1));
            return Action::Continue;
        }
        let client = self.client();
        let transport = self.transport;
        while let Some(msg) = self.down.next_message() {
            dns::on_query(self.id, msg, &client, transport);
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if data_size == 0 || self.up.is_poisoned() {
            return Action::Continue;
        }
        let Some(data) = self.get_upstream_data(0, data_size) else { return Action::Continue };
        if self.up.push(&data).is_err() {
            state::with(|vm| vm.count(Stat::ParseErrors, 1));
            return Action::Continue;
        }
        while let Some(msg) = self.up.next_message() {
            dns::on_response(self.id, msg);
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
