//! Messages the filter writes itself: the local answer to a blocked query,
//! and the placeholder query that stands in for it on a TCP stream.

use crate::message::Message;
use crate::name::read_name;
use crate::reader::{form, ParseError};

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const OPTION_EDE: u16 = 15; // RFC 8914 Extended DNS Errors
const EDE_BLOCKED: u16 = 15;

/// Addresses a sinkhole answer carries (per query type; a missing one gives NODATA).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sinkhole {
    pub a: Option<[u8; 4]>,
    pub aaaa: Option<[u8; 16]>,
    pub ttl: u32,
}

/// The answer to `query` (whose parse is `msg`) that the filter sends instead
/// of the resolver's: same id, opcode, RD and CD bits, the question copied
/// byte for byte, RA set, the given RCODE, the sinkhole address if one fits
/// the query type, and an OPT record with an Extended DNS Error "Blocked"
/// (RFC 8914) when the query carried EDNS.
pub fn local_answer(
    query: &[u8],
    msg: &Message,
    rcode: u8,
    sinkhole: Option<&Sinkhole>,
    ede_text: &str,
) -> Result<Vec<u8>, ParseError> {
    let question = msg.questions.first().ok_or_else(|| form(4, "no question to answer"))?;
    let (_, name_end) = read_name(query, 12)?;
    let q_end = name_end + 4;
    let qbytes = query.get(12..q_end).ok_or_else(|| form(name_end, "question truncated"))?;
    let rdata: Option<(u16, &[u8], u32)> = sinkhole.and_then(|s| match question.qtype {
        TYPE_A => s.a.as_ref().map(|a| (TYPE_A, &a[..], s.ttl)),
        TYPE_AAAA => s.aaaa.as_ref().map(|a| (TYPE_AAAA, &a[..], s.ttl)),
        _ => None,
    });
    let flags = 0x8000 // QR
        | (msg.header.flags & 0x7800) // opcode
        | (msg.header.flags & 0x0100) // RD
        | 0x0080 // RA
        | (msg.header.flags & 0x0010) // CD
        | u16::from(rcode & 0x0F);
    let mut out = Vec::with_capacity(12 + qbytes.len() + 64 + ede_text.len());
    out.extend_from_slice(&msg.header.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(rdata.is_some()).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(msg.edns.is_some()).to_be_bytes());
    out.extend_from_slice(qbytes);
    if let Some((rtype, data, ttl)) = rdata {
        out.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    if let Some(edns) = &msg.edns {
        let text = ede_text.as_bytes();
        let text = text.get(..text.len().min(200)).unwrap_or_default();
        out.push(0); // root
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&1232u16.to_be_bytes()); // our UDP payload size
        out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0]);
        out.extend_from_slice(&((4 + 2 + text.len()) as u16).to_be_bytes());
        out.extend_from_slice(&OPTION_EDE.to_be_bytes());
        out.extend_from_slice(&((2 + text.len()) as u16).to_be_bytes());
        out.extend_from_slice(&EDE_BLOCKED.to_be_bytes());
        out.extend_from_slice(text);
    }
    Ok(out)
}

/// A query that reveals nothing about the blocked name: the root's NS set,
/// without recursion, which any resolver answers from its priming data.
pub fn placeholder_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(17);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&[0, 0, 2, 0, 1]); // ".", NS, IN
    q
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::message::{parse_message, RData};

    // id 0xbeef, RD, www.example.com A, OPT with DO
    fn query(edns: bool) -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in ["www", "example", "com"] {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        if edns {
            q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn nxdomain_answer_mirrors_the_query() {
        let q = query(true);
        let m = parse_message(&q).unwrap();
        let a = parse_message(&local_answer(&q, &m, RCODE_NXDOMAIN, None, "dnsguard").unwrap()).unwrap();
        assert_eq!(a.header.id, 0xbeef);
        assert!(a.header.qr() && a.header.rd() && a.header.ra() && !a.header.aa());
        assert_eq!(a.rcode(), 3);
        assert_eq!(a.questions, m.questions);
        assert!(a.answers.is_empty());
        let edns = a.edns.unwrap();
        assert!(edns.dnssec_ok);
        assert_eq!(edns.options, vec![(15, 10)]);
    }

    #[test]
    fn sinkhole_answers_a_and_gives_nodata_for_other_types() {
        let q = query(false);
        let m = parse_message(&q).unwrap();
        let s = Sinkhole { a: Some([192, 0, 2, 1]), aaaa: None, ttl: 60 };
        let a = parse_message(&local_answer(&q, &m, RCODE_NOERROR, Some(&s), "x").unwrap()).unwrap();
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].name, "www.example.com");
        assert_eq!(a.answers[0].data, RData::A([192, 0, 2, 1]));
        assert!(a.edns.is_none());
        let mut q6 = q.clone();
        let n = q6.len();
        q6[n - 3] = 28; // AAAA
        let m6 = parse_message(&q6).unwrap();
        let a6 = parse_message(&local_answer(&q6, &m6, RCODE_NOERROR, Some(&s), "x").unwrap()).unwrap();
        assert!(a6.answers.is_empty());
        assert_eq!(a6.rcode(), 0);
    }

    #[test]
    fn placeholder_is_a_root_ns_query() {
        let m = parse_message(&placeholder_query(7)).unwrap();
        assert_eq!((m.header.id, m.header.rd(), m.questions[0].name.as_str(), m.questions[0].qtype), (7, false, "", 2));
    }
}
