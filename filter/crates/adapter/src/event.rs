//! v1 events: built by the shared flow crate (`dnsflow::event`).

pub use dnsflow::event::*;
