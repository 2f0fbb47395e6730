//! Domain names on the wire: labels, compression pointers, limits.

use crate::presentation::push_label;
use crate::reader::{form, ParseError};

/// Longest name on the wire, length octets included (RFC 1035 3.1).
pub const MAX_NAME_WIRE: usize = 255;
/// Compression pointers followed for one name at most. Pointers must also
/// point strictly backwards, so a loop cannot form even below this limit.
pub const MAX_POINTER_HOPS: usize = 64;

/// Reads the name starting at `start` in `msg`.
///
/// Returns the name in presentation form (lower-case ASCII, no trailing dot,
/// `""` for the root; bytes outside `[a-z0-9-_]` are written `\DDD`: the
/// canonical form of [`crate::presentation`]) and the
/// offset just past the name *in place* (after the first pointer, if any).
pub fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::with_capacity(48);
    let mut pos = start;
    let mut end: Option<usize> = None;
    let mut wire_len = 0usize;
    let mut hops = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(ParseError::ShortInput { offset: pos })? as usize;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    wire_len += 1;
                    if wire_len > MAX_NAME_WIRE {
                        return Err(form(pos, "name over 255 octets"));
                    }
                    return Ok((out, end.unwrap_or(pos + 1)));
                }
                wire_len += len + 1;
                if wire_len + 1 > MAX_NAME_WIRE {
                    return Err(form(pos, "name over 255 octets"));
                }
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(ParseError::ShortInput { offset: pos + 1 })?;
                if !out.is_empty() {
                    out.push('.');
                }
                push_label(&mut out, label);
                pos += 1 + len;
            }
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or(ParseError::ShortInput { offset: pos + 1 })?;
                let target = ((len & 0x3F) << 8) | low as usize;
                if target >= pos {
                    return Err(form(pos, "compression pointer not strictly backwards"));
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(form(pos, "too many compression pointers"));
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                pos = target;
            }
            _ => return Err(form(pos, "reserved label type")),
        }
    }
}
