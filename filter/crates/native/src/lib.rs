//! dnsguard's native Envoy dynamic module, for DNS over UDP and TCP.
//!
//! * As a UDP listener filter before `udp_proxy`, it parses every query
//!   datagram, decides it against the signed policy feed exactly as the
//!   proxy-wasm filter does (`dnsflow`), answers blocked names itself, and
//!   ships every query as an event (transport `udp`; the response is not
//!   observed: `udp_proxy` sends resolver replies straight to the client).
//! * As a network filter before `tcp_proxy` (DNS over TCP, or DoT after
//!   Envoy's TLS), it sees both directions: queries are decided the same way,
//!   and each event carries the response and the latency.
//!
//! * `config`: the filter configuration (JSON), validated;
//! * `module`: the decision and the events, testable without Envoy;
//! * `tcp`: one DNS-over-TCP connection (framing, pairing, local answers);
//! * `http`: the small HTTP client of the module's two threads;
//! * `ffi`, `ffi_tcp`: the ABI hooks and callbacks (the only unsafe code).

pub mod config;
pub mod ffi;
pub mod ffi_tcp;
pub mod http;
pub mod module;
pub mod tcp;
#[cfg(test)]
mod test_support;
