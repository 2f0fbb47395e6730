//! Events and v2 batches: built by the shared flow crate (`dnsflow::event`).

pub use dnsflow::event::*;
