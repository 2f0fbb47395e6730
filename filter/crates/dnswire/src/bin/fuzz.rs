//! Fuzzes the DNS parser and the TCP framer with `dnswire::fuzzing`'s
//! mutations. A panic writes the input to `crash-<n>.bin` in the current
//! folder and exits 1.
//!
//! Usage: fuzz-dnswire ITERATIONS [SEED_DIR ...]

use std::fs;
use std::panic;

use dnswire::fuzzing::{load_seeds, mutate, Rng};
use dnswire::{parse_message, TcpFramer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let seeds = load_seeds(args.get(2..).unwrap_or(&[]));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ iterations);
    let (mut ok, mut err) = (0u64, 0u64);
    panic::set_hook(Box::new(|_| {}));
    for i in 0..iterations {
        let input = mutate(&mut rng, &seeds);
        let result = panic::catch_unwind(|| {
            let parsed = parse_message(&input);
            let mut framer = TcpFramer::new(1 << 17);
            let mut framed = Vec::with_capacity(input.len() + 2);
            framed.extend_from_slice(&(input.len() as u16).to_be_bytes());
            framed.extend_from_slice(&input);
            for chunk in framed.chunks(1 + (input.len() % 7)) {
                let _ = framer.push(chunk);
                while let Some(m) = framer.next_message() {
                    let _ = parse_message(m);
                }
            }
            parsed.is_ok()
        });
        match result {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => {
                let path = format!("crash-{i}.bin");
                let _ = fs::write(&path, &input);
                eprintln!("panic on input {i}; saved to {path}");
                std::process::exit(1);
            }
        }
    }
    println!("fuzz-dnswire: {iterations} inputs from {} seeds, {ok} parsed, {err} rejected, 0 panics", seeds.len());
}
