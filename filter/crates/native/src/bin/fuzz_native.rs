//! Fuzzes the native module's entry points with `dnswire::fuzzing`'s
//! mutations: `Module::on_datagram` (UDP: parse, decide against a policy with
//! blocking, shadow and sinkhole rules, build the local answer and the
//! event), and a DNS-over-TCP connection (`TcpConn`) fed each input framed,
//! in reads split at random points, in both directions, and unframed as a raw
//! stream. A panic writes the input to `crash-<n>.bin` in the current folder
//! and exits 1.
//!
//! Usage: fuzz-native ITERATIONS [SEED_DIR ...]

use std::fs;
use std::panic;

use dnsguard_native::config::Config;
use dnsguard_native::module::{Gauge, Module, Reply, Stat, StatsSink};
use dnsguard_native::tcp::TcpConn;
use dnspolicy::Policy;
use dnswire::fuzzing::{load_seeds, mutate, Rng};

struct NoStats;

impl StatsSink for NoStats {
    fn count(&self, _: Stat, _: u64) {}
    fn gauge(&self, _: Gauge, _: u64) {}
}

/// `input` through one TCP connection: framed as a query, then as its
/// response, in two reads split at `cut`; then unframed, as raw stream bytes.
fn tcp(module: &Module, input: &[u8], cut: usize) {
    let now = 1_800_000_000_000_000;
    let mut conn = TcpConn::new("10.1.2.3", 40000, false, None);
    let mut framed = u16::try_from(input.len()).unwrap_or(u16::MAX).to_be_bytes().to_vec();
    framed.extend_from_slice(input);
    let (a, b) = framed.split_at(cut.min(framed.len()));
    conn.on_read(module, &[a], now);
    conn.on_read(module, &[b], now);
    conn.on_write(module, &[a, b], now + 10);
    conn.on_read(module, &[input], now + 20);
    conn.on_write(module, &[input], now + 30);
    conn.on_close(module, now + 40);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let seeds = load_seeds(args.get(2..).unwrap_or(&[]));
    // a collector that is never reached (the queue just fills and drops), no feed thread
    // the feed section makes the module enforce; its thread is never started
    let config = r#"{"node":{"namespace":"shop","workload":"web"},
                     "collector":{"address":"127.0.0.1:9","token":"0123456789abcdef","max_queue":64},
                     "feed":{"address":"127.0.0.1:9","token":"0123456789abcdef",
                             "keys":[{"id":"k1","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]},
                     "sinkhole":{"a":"192.0.2.53","aaaa":"2001:db8::53"}}"#;
    let Ok(config) = Config::parse(config.as_bytes()) else {
        eprintln!("fuzz-native: bad built-in configuration");
        std::process::exit(2);
    };
    let Ok(module) = Module::new(config, Box::new(NoStats)) else {
        eprintln!("fuzz-native: cannot build the module");
        std::process::exit(2);
    };
    let mut policy = Policy::default();
    let rules = "dnsguard-policy/1\tsnapshot\t1\t0\t0\n\
                 +\td\tns:shop\ts\tnxdomain\t0\tcom\n\
                 +\to\t*\ts\tsinkhole\t0\tnet\n\
                 +\to\t*\ts\trefused\t0\torg\n\
                 +\td\t*\te\tshadow\t0\texample.net\n";
    if policy.apply_body(rules.as_bytes(), 100).is_err() {
        eprintln!("fuzz-native: bad built-in policy");
        std::process::exit(2);
    }
    module.set_policy(policy);
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B ^ iterations);
    let (mut answered, mut passed) = (0u64, 0u64);
    panic::set_hook(Box::new(|_| {}));
    for i in 0..iterations {
        let input = mutate(&mut rng, &seeds);
        let cut = rng.below(input.len() + 3);
        let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            let reply = module.on_datagram(&input, "10.1.2.3", 5353, 1_800_000_000_000_000);
            tcp(&module, &input, cut);
            reply
        }));
        match result {
            Ok(Reply::Answer(_)) | Ok(Reply::Swallow) => answered += 1,
            Ok(Reply::Pass) => passed += 1,
            Err(_) => {
                let path = format!("crash-{i}.bin");
                let _ = fs::write(&path, &input);
                eprintln!("panic on input {i}; saved to {path}");
                std::process::exit(1);
            }
        }
        while module.take_batch(64).is_some() {}
    }
    println!("fuzz-native: {iterations} datagrams from {} seeds, {passed} passed, {answered} answered, 0 panics", seeds.len());
}
