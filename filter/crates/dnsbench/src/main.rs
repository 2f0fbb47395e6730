//! DNS load generator and canned responder, TCP and UDP (host tool for bench/).
//!
//! `dnsbench serve PORT` answers every length-prefixed query on its own
//! connection thread with the query echoed as a response plus one A record,
//! and every datagram to the same UDP port the same way.
//! `dnsbench load PORT CONNS PIPELINE SECONDS` keeps PIPELINE queries in
//! flight on each of CONNS connections for SECONDS and prints one JSON line:
//! queries answered, seconds, queries per second and the p50/p99 latency.
//! PIPELINE 0 means one query per connection (connect, ask, read, close), the
//! way stub resolvers and `dig +tcp` use DNS over TCP.
//! `dnsbench load-udp PORT SOCKETS INFLIGHT SECONDS` does the same over UDP:
//! INFLIGHT queries outstanding per socket, a lost one given up after 200 ms
//! (counted as `lost`) and replaced.
//! `dnsbench sink PORT` stands in for the collector where its own CPU must not
//! be counted: it reads each HTTP/1.1 POST (`Content-Length` body) in full,
//! counts the bytes and answers 202.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn read_msg(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head)?;
    let n = u16::from_be_bytes(head) as usize;
    buf.resize(n, 0);
    s.read_exact(buf)
}

fn answer(q: &[u8]) -> Vec<u8> {
    let mut r = q.to_vec();
    if r.len() < 12 {
        return r;
    }
    r[2] |= 0x80; // QR
    r[3] = 0x80; // RA, NOERROR
    r[7] = 1; // ANCOUNT
    r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
    r
}

fn serve_udp(port: u16) {
    let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind udp");
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
        sock.send_to(&answer(&buf[..n]), peer).ok();
    }
}

fn sink_connection(conn: TcpStream) -> std::io::Result<()> {
    let mut reader = std::io::BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        let mut close = false;
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line)?;
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            close |= header == "connection: close";
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")?;
        if close {
            return Ok(());
        }
    }
}

fn sink(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for conn in listener.incoming().flatten() {
        thread::spawn(move || sink_connection(conn));
    }
}

fn serve(port: u16) {
    thread::spawn(move || serve_udp(port));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for conn in listener.incoming().flatten() {
        thread::spawn(move || {
            let mut conn = conn;
            conn.set_nodelay(true).ok();
            let mut buf = Vec::new();
            let mut out = Vec::new();
            while read_msg(&mut conn, &mut buf).is_ok() {
                let r = answer(&buf);
                out.clear();
                out.extend_from_slice(&(r.len() as u16).to_be_bytes());
                out.extend_from_slice(&r);
                if conn.write_all(&out).is_err() {
                    break;
                }
            }
        });
    }
}

fn query(id: u16, n: u64) -> Vec<u8> {
    let name = format!("q{n}.bench{}.example.com", n % 97);
    let mut m = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&m);
    framed
}

/// `query` without the TCP length prefix.
fn datagram(id: u16, n: u64) -> Vec<u8> {
    query(id, n).split_off(2)
}

fn udp_socket(port: u16, c: usize, inflight: usize, stop: &AtomicBool) -> (u64, u64, Vec<u64>) {
    let s = UdpSocket::bind(("127.0.0.1", 0)).expect("bind");
    s.connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut lat = Vec::with_capacity(1 << 16);
    let mut sent_at: Vec<Option<Instant>> = vec![None; 65536];
    let mut n: u64 = (c as u64) << 40;
    let mut id: u16 = 0;
    let send = |id: &mut u16, n: &mut u64, sent_at: &mut [Option<Instant>]| {
        *id = id.wrapping_add(1);
        *n += 1;
        sent_at[*id as usize] = Some(Instant::now());
        s.send(&datagram(*id, *n)).ok();
    };
    for _ in 0..inflight {
        send(&mut id, &mut n, &mut sent_at);
    }
    let (mut answered, mut lost) = (0u64, 0u64);
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match s.recv(&mut buf) {
            Ok(len) if len >= 2 => {
                let rid = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                let Some(t0) = sent_at[rid].take() else { continue };
                lat.push(t0.elapsed().as_micros() as u64);
                answered += 1;
            }
            Ok(_) => continue,
            Err(_) => {
                // nothing for 200 ms: whatever is outstanding is lost
                lost += sent_at.iter_mut().filter_map(Option::take).count() as u64;
                for _ in 0..inflight {
                    send(&mut id, &mut n, &mut sent_at);
                }
                continue;
            }
        }
        send(&mut id, &mut n, &mut sent_at);
    }
    (answered, lost, lat)
}

fn load_udp(port: u16, sockets: usize, inflight: usize, seconds: f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..sockets)
        .map(|c| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || udp_socket(port, c, inflight, &stop))
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let (mut total, mut lost) = (0u64, 0u64);
    let mut lat = Vec::new();
    for h in handles {
        let (a, l, v) = h.join().unwrap();
        total += a;
        lost += l;
        lat.extend(v);
    }
    report(total, elapsed, &mut lat, &format!(", \"lost\": {lost}"));
}

fn fresh_connections(port: u16, c: usize, stop: &AtomicBool) -> (u64, Vec<u64>) {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut n: u64 = (c as u64) << 40;
    let mut buf = Vec::new();
    let mut answered = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let t0 = Instant::now();
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { continue };
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        if s.write_all(&query(n as u16, n)).is_err() || read_msg(&mut s, &mut buf).is_err() {
            continue;
        }
        lat.push(t0.elapsed().as_micros() as u64);
        answered += 1;
    }
    (answered, lat)
}

fn load(port: u16, conns: usize, pipeline: usize, seconds: f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                if pipeline == 0 {
                    return fresh_connections(port, c, &stop);
                }
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_nodelay(true).ok();
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut lat = Vec::with_capacity(1 << 16);
                let mut sent_at = vec![Instant::now(); 65536];
                let mut n: u64 = (c as u64) << 40;
                let mut id: u16 = 0;
                let mut buf = Vec::new();
                for _ in 0..pipeline {
                    id = id.wrapping_add(1);
                    n += 1;
                    sent_at[id as usize] = Instant::now();
                    s.write_all(&query(id, n)).unwrap();
                }
                let mut answered = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if read_msg(&mut s, &mut buf).is_err() {
                        break;
                    }
                    let rid = u16::from_be_bytes([buf[0], buf[1]]);
                    lat.push(sent_at[rid as usize].elapsed().as_micros() as u64);
                    answered += 1;
                    id = id.wrapping_add(1);
                    n += 1;
                    sent_at[id as usize] = Instant::now();
                    if s.write_all(&query(id, n)).is_err() {
                        break;
                    }
                }
                (answered, lat)
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = 0u64;
    let mut lat = Vec::new();
    for h in handles {
        let (a, l) = h.join().unwrap();
        total += a;
        lat.extend(l);
    }
    report(total, elapsed, &mut lat, "");
}

fn report(total: u64, elapsed: f64, lat: &mut [u64], extra: &str) {
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64) * p) as usize).copied().unwrap_or(0);
    println!(
        "{{\"answered\": {total}, \"seconds\": {elapsed:.3}, \"qps\": {:.1}, \"p50_us\": {}, \"p99_us\": {}{extra}}}",
        total as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(args[2].parse().expect("port")),
        Some("load") => load(
            args[2].parse().expect("port"),
            args[3].parse().expect("conns"),
            args[4].parse().expect("pipeline"),
            args[5].parse().expect("seconds"),
        ),
        Some("sink") => sink(args[2].parse().expect("port")),
        Some("load-udp") => load_udp(
            args[2].parse().expect("port"),
            args[3].parse().expect("sockets"),
            args[4].parse().expect("inflight"),
            args[5].parse().expect("seconds"),
        ),
        _ => {
            eprintln!(
                "usage: dnsbench serve PORT | dnsbench load PORT CONNS PIPELINE SECONDS | dnsbench load-udp PORT SOCKETS INFLIGHT SECONDS | dnsbench sink PORT"
            );
            std::process::exit(2);
        }
    }
}
