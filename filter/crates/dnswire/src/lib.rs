//! Strict, bounds-checked DNS wire-format parsing.
//!
//! Every read is checked; compression pointers must point strictly backwards
//! (so loops are impossible) and a hop limit guards anyway; labels are at most
//! 63 bytes and names at most 255; header counts are attacker-controlled, so
//! they are checked against the bytes left and never used to pre-allocate;
//! record data must be consumed exactly; trailing bytes are an error. Errors
//! carry the byte offset where parsing stopped. "Need more bytes" on a TCP
//! stream is the framer's business ([`TcpFramer`]), not a parse error.
//!
//! This crate has no proxy-wasm dependency: it is tested and fuzzed on the host.

#![forbid(unsafe_code)]

mod build;
pub mod fuzzing;
mod framer;
mod message;
mod name;
mod names;
pub mod presentation;
mod reader;

pub use build::{local_answer, placeholder_query, Sinkhole, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED};
pub use framer::{FrameError, TcpFramer, MAX_DNS_MESSAGE};
pub use message::{
    parse_message, ClientSubnet, Edns, Header, Message, Question, RData, Record, MAX_RECORDS,
};
pub use name::{read_name, MAX_NAME_WIRE, MAX_POINTER_HOPS};
pub use names::{class_name, rcode_name, type_name};
pub use reader::ParseError;
