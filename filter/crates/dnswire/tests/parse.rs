#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

//! Host tests of the DNS parser and the TCP framer.

use dnswire::{parse_message, rcode_name, read_name, type_name, ParseError, RData, TcpFramer};

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = vec![(id >> 8) as u8, id as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

#[test]
fn parses_a_simple_query() {
    let m = parse_message(&query(0xBEEF, "WWW.Example.com", 1)).unwrap();
    assert_eq!(m.header.id, 0xBEEF);
    assert!(m.header.rd());
    assert!(!m.header.qr());
    assert_eq!(m.questions.len(), 1);
    assert_eq!(m.questions[0].name, "www.example.com");
    assert_eq!(type_name(m.questions[0].qtype), "A");
}

#[test]
fn parses_compressed_answers_and_edns() {
    let mut m = query(7, "example.com", 1);
    m[2] = 0x81;
    m[3] = 0x83; // NXDOMAIN, RA
    m[7] = 2; // ancount
    m[11] = 1; // arcount
    // answer 1: pointer to the question name, A 93.184.216.34 ttl 300
    m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 93, 184, 216, 34]);
    // answer 2: CNAME www.<ptr> ttl 60
    m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'w', b'w', 0xC0, 12]);
    // OPT: udp 1232, DO, ECS 192.0.2.0/24, padding 4
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 19, 0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2, 0, 12, 0, 4, 0, 0, 0, 0]);
    let msg = parse_message(&m).unwrap();
    assert_eq!(rcode_name(msg.rcode()), "NXDOMAIN");
    assert_eq!(msg.answers.len(), 2);
    assert_eq!(msg.answers[0].name, "example.com");
    assert_eq!(msg.answers[0].data_text(), "93.184.216.34");
    assert_eq!(msg.answers[1].data, RData::Name("www.example.com".into()));
    assert_eq!(msg.min_answer_ttl(), Some(60));
    let e = msg.edns.unwrap();
    assert!(e.dnssec_ok);
    assert_eq!(e.udp_size, 1232);
    assert_eq!(e.padding, 4);
    let ecs = e.client_subnet.unwrap();
    assert_eq!((ecs.family, ecs.source_prefix, ecs.address.as_slice()), (1, 24, &[192u8, 0, 2][..]));
}

#[test]
fn rejects_forward_and_self_pointers() {
    // pointer at offset 12 to itself
    let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1];
    assert!(matches!(parse_message(&m), Err(ParseError::Form { offset: 12, .. })));
    // forward pointer
    m[13] = 14;
    assert!(matches!(parse_message(&m), Err(ParseError::Form { .. })));
    // two pointers pointing at each other cannot form a loop: the second is forward
    let (_, _) = read_name(&[3, b'a', b'b', b'c', 0], 0).unwrap();
}

#[test]
fn rejects_names_over_255_and_reserved_label_types() {
    let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..5 {
        m.push(63);
        m.extend(std::iter::repeat(b'a').take(63));
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    let err = parse_message(&m).unwrap_err();
    assert_eq!(err.reason(), "name over 255 octets");
    let bad = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 1, 0, 1];
    assert_eq!(parse_message(&bad).unwrap_err().reason(), "reserved label type");
}

#[test]
fn header_counts_are_checked_against_the_message() {
    let mut m = query(1, "a.com", 1);
    m[5] = 0xFF; // 255 questions in a 23-byte message
    assert_eq!(parse_message(&m).unwrap_err().reason(), "question count exceeds message");
    let mut m = query(1, "a.com", 1);
    m[7] = 0xFF;
    assert_eq!(parse_message(&m).unwrap_err().reason(), "record counts exceed message");
}

#[test]
fn record_data_must_be_consumed_exactly() {
    let mut m = query(7, "example.com", 1);
    m[2] = 0x81;
    m[7] = 1;
    // CNAME with rdlength 8 but a 2-byte name (pointer) inside
    m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 8, 0xC0, 12, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse_message(&m).unwrap_err().reason(), "record data length mismatch");
    // A record with 5 bytes
    let mut m = query(7, "example.com", 1);
    m[7] = 1;
    m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 5, 1, 2, 3, 4, 5]);
    assert_eq!(parse_message(&m).unwrap_err().reason(), "A record data is not 4 bytes");
}

#[test]
fn trailing_bytes_and_truncation_are_errors() {
    let mut m = query(1, "a.com", 1);
    m.push(0);
    assert_eq!(parse_message(&m).unwrap_err().reason(), "trailing bytes after the last record");
    let m = query(1, "a.com", 1);
    for cut in 0..m.len() {
        assert!(parse_message(&m[..cut]).is_err(), "prefix of {cut} bytes parsed");
    }
}

#[test]
fn bad_client_subnet_is_malformed() {
    let mut m = query(1, "a.com", 1);
    m[11] = 1;
    // ECS family 1, source prefix 33 (> 32)
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 9, 0, 8, 0, 5, 0, 1, 33, 0, 1]);
    assert_eq!(parse_message(&m).unwrap_err().reason(), "client subnet prefix longer than the address");
}

#[test]
fn ipv6_text_is_rfc5952() {
    let mut m = query(7, "v6.example", 28);
    m[2] = 0x81;
    m[7] = 1;
    m.extend_from_slice(&[0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(parse_message(&m).unwrap().answers[0].data_text(), "2001:db8::1");
}

#[test]
fn framer_handles_split_and_coalesced_messages() {
    let a = query(1, "a.com", 1);
    let b = query(2, "bb.org", 28);
    let mut stream = Vec::new();
    for q in [&a, &b] {
        stream.extend_from_slice(&(q.len() as u16).to_be_bytes());
        stream.extend_from_slice(q);
    }
    for split in 0..=stream.len() {
        let mut f = TcpFramer::new(1 << 17);
        let mut got = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            f.push(part).unwrap();
            while let Some(m) = f.next_message() {
                got.push(parse_message(m).unwrap().header.id);
            }
        }
        assert_eq!(got, vec![1, 2], "split at {split}");
        assert_eq!(f.buffered(), 0);
    }
}

#[test]
fn framer_buffer_is_bounded() {
    let mut f = TcpFramer::new(0); // raised to one maximal message + prefix
    assert!(f.push(&[0xFF, 0xFF]).is_ok());
    assert!(f.push(&vec![0u8; 65_535]).is_ok());
    assert!(f.next_message().is_some());
    assert!(f.push(&vec![0u8; 70_000]).is_err());
    assert!(f.is_poisoned());
    assert!(f.push(&[0, 1, 0]).is_err());
}

#[test]
fn wire_corpus_never_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/data/captures/wire");
    let mut n = 0;
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            let _ = parse_message(&bytes);
            n += 1;
        }
    }
    assert!(n >= 200, "expected the shared wire corpus, found {n} files");
}
