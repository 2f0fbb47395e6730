//! dnsguard for DNS over UDP: an Envoy dynamic module with a UDP listener
//! filter. Placed before `udp_proxy` on a UDP listener, it parses every query
//! datagram, decides it against the signed policy feed exactly as the
//! proxy-wasm filter does (`dnsflow`), answers blocked names itself, and ships
//! every query as a v1 event (transport `udp`; the response is not observed:
//! `udp_proxy` sends resolver replies straight to the client).
//!
//! * `config`: the filter configuration (JSON), validated;
//! * `module`: the work, testable without Envoy;
//! * `http`: the small HTTP client of the module's two threads;
//! * `ffi`: the ABI hooks and callbacks (the only unsafe code).

pub mod config;
pub mod ffi;
pub mod http;
pub mod module;
