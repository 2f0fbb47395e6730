//! The cost floor of a proxy-wasm network filter in Envoy, for
//! `bench/bench_filter.py`. Two behaviours, chosen by the plugin configuration:
//!
//! * `"empty"`: every callback returns at once, no host calls. What Envoy and
//!   V8 spend here is spent by any Wasm network filter, whatever it does.
//! * `"read"`: each data callback also copies the new bytes into the module,
//!   as any filter that parses the stream must.
//!
//! dnsguard's filter does both and more (framing, parsing, pairing, an event
//! per query); the benchmark sets its cost beside these two.

use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Floor { read: false }) });
}}

struct Floor {
    read: bool,
}

impl Context for Floor {}

impl RootContext for Floor {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.get_plugin_configuration().as_deref() {
            Some(b"read") => self.read = true,
            Some(b"empty") | None => self.read = false,
            Some(_) => {
                log::error!("wasm-floor: configuration must be \"empty\" or \"read\"");
                return false;
            }
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Stream { read: self.read, seen: 0 }))
    }
}

struct Stream {
    read: bool,
    /// Bytes copied in, so the copy cannot be optimised away.
    seen: usize,
}

impl Context for Stream {}

impl StreamContext for Stream {
    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if self.read {
            self.seen += self.get_downstream_data(0, data_size).map_or(0, |d| d.len());
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if self.read {
            self.seen += self.get_upstream_data(0, data_size).map_or(0, |d| d.len());
        }
        Action::Continue
    }
}
