//! DNS messages: header, questions, resource records, EDNS.

use crate::name::read_name;
use crate::reader::{form, ParseError, Reader};

/// Records kept per section at most; more is treated as malformed. A 64 KiB
/// message cannot hold more than ~5,900 records of 11 bytes anyway.
pub const MAX_RECORDS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn qr(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0F) as u8
    }
    pub fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    pub fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    pub fn rd(&self) -> bool {
        self.flags & 0x0100 != 0
    }
    pub fn ra(&self) -> bool {
        self.flags & 0x0080 != 0
    }
    pub fn ad(&self) -> bool {
        self.flags & 0x0020 != 0
    }
    pub fn cd(&self) -> bool {
        self.flags & 0x0010 != 0
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000F) as u8
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSubnet {
    pub family: u16,
    pub source_prefix: u8,
    pub scope_prefix: u8,
    pub address: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edns {
    pub udp_size: u16,
    pub extended_rcode: u8,
    pub version: u8,
    pub dnssec_ok: bool,
    pub client_subnet: Option<ClientSubnet>,
    pub padding: usize,
    /// (option code, data length) of every option, in order.
    pub options: Vec<(u16, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A([u8; 4]),
    Aaaa([u8; 16]),
    /// CNAME, NS, PTR, DNAME: one domain name.
    Name(String),
    Mx { preference: u16, exchange: String },
    Srv { priority: u16, weight: u16, port: u16, target: String },
    Soa { mname: String, rname: String, serial: u32, refresh: u32, retry: u32, expire: u32, minimum: u32 },
    Txt(Vec<Vec<u8>>),
    Opt(Edns),
    Other(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    /// RDATA in presentation form (``1.2.3.4``, ``2001:db8::1``, a name, ...).
    /// The owner name and the data text, taking the record apart (a name in
    /// the data moves out instead of being copied).
    pub fn into_data_text(self) -> (String, String) {
        match self.data {
            RData::Name(n) => (self.name, n),
            _ => {
                let text = self.data_text();
                (self.name, text)
            }
        }
    }

    pub fn data_text(&self) -> String {
        match &self.data {
            RData::A(a) => format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            RData::Aaaa(a) => ipv6_text(a),
            RData::Name(n) => n.clone(),
            RData::Mx { preference, exchange } => format!("{preference} {exchange}"),
            RData::Srv { priority, weight, port, target } => format!("{priority} {weight} {port} {target}"),
            RData::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
                format!("{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}")
            }
            RData::Txt(parts) => {
                let mut s = String::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    s.push_str(&String::from_utf8_lossy(p));
                }
                s
            }
            RData::Opt(_) => String::new(),
            RData::Other(bytes) => {
                let mut s = format!("\\# {}", bytes.len());
                if !bytes.is_empty() {
                    s.push(' ');
                    for b in bytes.iter().take(64) {
                        s.push_str(&format!("{b:02x}"));
                    }
                }
                s
            }
        }
    }
}

/// RFC 5952 text of an IPv6 address (longest run of two or more zero groups as ``::``).
pub fn ipv6_text(a: &[u8; 16]) -> String {
    let mut groups = [0u16; 8];
    for (i, g) in groups.iter_mut().enumerate() {
        *g = u16::from_be_bytes([a.get(2 * i).copied().unwrap_or(0), a.get(2 * i + 1).copied().unwrap_or(0)]);
    }
    let (mut best_start, mut best_len, mut cur_start, mut cur_len) = (usize::MAX, 0usize, 0usize, 0usize);
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            if cur_len == 0 {
                cur_start = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best_len = cur_len;
                best_start = cur_start;
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len < 2 {
        best_start = usize::MAX;
    }
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best_start {
            s.push_str("::");
            i += best_len;
            continue;
        }
        if !s.is_empty() && !s.ends_with(':') {
            s.push(':');
        }
        s.push_str(&format!("{:x}", groups.get(i).copied().unwrap_or(0)));
        i += 1;
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    pub edns: Option<Edns>,
}

impl Message {
    /// The full response code: header RCODE plus EDNS extended bits.
    pub fn rcode(&self) -> u16 {
        let ext = self.edns.as_ref().map_or(0, |e| e.extended_rcode as u16);
        (ext << 4) | self.header.rcode() as u16
    }

    /// Smallest TTL among the answers, if any.
    pub fn min_answer_ttl(&self) -> Option<u32> {
        self.answers.iter().map(|r| r.ttl).min()
    }
}

const QUESTION_MIN: usize = 5; // root name + type + class
const RECORD_MIN: usize = 11; // root name + type + class + ttl + rdlength

/// Parses one complete DNS message.
pub fn parse_message(msg: &[u8]) -> Result<Message, ParseError> {
    let mut r = Reader::new(msg);
    let header = Header {
        id: r.u16()?,
        flags: r.u16()?,
        qdcount: r.u16()?,
        ancount: r.u16()?,
        nscount: r.u16()?,
        arcount: r.u16()?,
    };
    let qd = header.qdcount as usize;
    if qd * QUESTION_MIN > r.remaining() {
        return Err(form(4, "question count exceeds message"));
    }
    let mut questions = Vec::with_capacity(qd.min(4));
    for _ in 0..qd {
        let (name, end) = read_name(msg, r.pos)?;
        r.pos = end;
        questions.push(Question { name, qtype: r.u16()?, qclass: r.u16()? });
    }
    let rr_total = header.ancount as usize + header.nscount as usize + header.arcount as usize;
    if rr_total * RECORD_MIN > r.remaining() {
        return Err(form(6, "record counts exceed message"));
    }
    let answers = read_section(&mut r, header.ancount, false)?;
    let authority = read_section(&mut r, header.nscount, false)?;
    let additional = read_section(&mut r, header.arcount, true)?;
    if r.remaining() != 0 {
        return Err(form(r.pos, "trailing bytes after the last record"));
    }
    let mut edns = None;
    for rec in &additional {
        if let RData::Opt(e) = &rec.data {
            if edns.is_some() {
                return Err(form(r.pos, "more than one OPT record"));
            }
            edns = Some(e.clone());
        }
    }
    Ok(Message { header, questions, answers, authority, additional, edns })
}

fn read_section(r: &mut Reader<'_>, count: u16, additional: bool) -> Result<Vec<Record>, ParseError> {
    let n = count as usize;
    if n > MAX_RECORDS {
        return Err(form(r.pos, "too many records"));
    }
    let mut out = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        out.push(read_record(r, additional)?);
    }
    Ok(out)
}

fn read_record(r: &mut Reader<'_>, additional: bool) -> Result<Record, ParseError> {
    let start = r.pos;
    let (name, end) = read_name(r.msg, r.pos)?;
    r.pos = end;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    let rdlen = r.u16()? as usize;
    let rd_start = r.pos;
    let rd_end = rd_start + rdlen;
    if rd_end > r.msg.len() {
        return Err(form(rd_start, "record data runs past the message"));
    }
    let data = match rtype {
        41 => {
            if !additional {
                return Err(form(start, "OPT record outside the additional section"));
            }
            if !name.is_empty() {
                return Err(form(start, "OPT record owner is not the root"));
            }
            RData::Opt(read_edns(r, class, ttl, rd_end)?)
        }
        1 => {
            if rdlen != 4 {
                return Err(form(rd_start, "A record data is not 4 bytes"));
            }
            match r.bytes(4)? {
                [a, b, c, d] => RData::A([*a, *b, *c, *d]),
                _ => return Err(form(rd_start, "A record data is not 4 bytes")),
            }
        }
        28 => {
            if rdlen != 16 {
                return Err(form(rd_start, "AAAA record data is not 16 bytes"));
            }
            let b = r.bytes(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            RData::Aaaa(a)
        }
        2 | 5 | 12 | 39 => RData::Name(read_rdata_name(r, rd_end)?),
        15 => {
            let preference = r.u16()?;
            RData::Mx { preference, exchange: read_rdata_name(r, rd_end)? }
        }
        33 => {
            let priority = r.u16()?;
            let weight = r.u16()?;
            let port = r.u16()?;
            RData::Srv { priority, weight, port, target: read_rdata_name(r, rd_end)? }
        }
        6 => {
            let mname = read_rdata_name(r, rd_end)?;
            let rname = read_rdata_name(r, rd_end)?;
            RData::Soa {
                mname,
                rname,
                serial: r.u32()?,
                refresh: r.u32()?,
                retry: r.u32()?,
                expire: r.u32()?,
                minimum: r.u32()?,
            }
        }
        16 | 99 => {
            let mut parts = Vec::new();
            while r.pos < rd_end {
                let len = r.u8()? as usize;
                if r.pos + len > rd_end {
                    return Err(form(r.pos, "TXT string runs past the record data"));
                }
                parts.push(r.bytes(len)?.to_vec());
            }
            RData::Txt(parts)
        }
        _ => RData::Other(r.bytes(rdlen)?.to_vec()),
    };
    if r.pos != rd_end {
        return Err(form(r.pos, "record data length mismatch"));
    }
    Ok(Record { name, rtype, class, ttl, data })
}

fn read_rdata_name(r: &mut Reader<'_>, rd_end: usize) -> Result<String, ParseError> {
    let (name, end) = read_name(r.msg, r.pos)?;
    if end > rd_end {
        return Err(form(r.pos, "name runs past the record data"));
    }
    r.pos = end;
    Ok(name)
}

fn read_edns(r: &mut Reader<'_>, class: u16, ttl: u32, rd_end: usize) -> Result<Edns, ParseError> {
    let mut e = Edns {
        udp_size: class,
        extended_rcode: (ttl >> 24) as u8,
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        ..Edns::default()
    };
    while r.pos < rd_end {
        let code = r.u16()?;
        let len = r.u16()? as usize;
        let opt_start = r.pos;
        if opt_start + len > rd_end {
            return Err(form(opt_start, "EDNS option runs past the OPT data"));
        }
        let data = r.bytes(len)?;
        e.options.push((code, len));
        match code {
            8 => e.client_subnet = Some(read_ecs(data, opt_start)?),
            12 => e.padding += len,
            _ => {}
        }
    }
    Ok(e)
}

fn read_ecs(data: &[u8], offset: usize) -> Result<ClientSubnet, ParseError> {
    let mut r = Reader::new(data);
    let family = r.u16().map_err(|_| form(offset, "client subnet option too short"))?;
    let source_prefix = r.u8().map_err(|_| form(offset, "client subnet option too short"))?;
    let scope_prefix = r.u8().map_err(|_| form(offset, "client subnet option too short"))?;
    let max_prefix = match family {
        1 => 32u8,
        2 => 128u8,
        _ => return Err(form(offset, "client subnet family is not IPv4 or IPv6")),
    };
    if source_prefix > max_prefix || scope_prefix > max_prefix {
        return Err(form(offset, "client subnet prefix longer than the address"));
    }
    let address = data.get(4..).unwrap_or(&[]).to_vec();
    if address.len() != (source_prefix as usize).div_ceil(8) {
        return Err(form(offset, "client subnet address length does not match its prefix"));
    }
    Ok(ClientSubnet { family, source_prefix, scope_prefix, address })
}
