//! Host tool: load a policy snapshot, answer decisions for queries on stdin.
//! `policy-decide SNAPSHOT < queries` where each query line is
//! `name<TAB>namespace<TAB>workload<TAB>now`; prints `action<TAB>matched name`
//! (`allow<TAB>-` when nothing matches). Used by the property test that holds
//! the filter's matcher to the Python reference evaluation.
//!
//! `policy-decide --dump SNAPSHOT` prints the table the filter would hold
//! (as a snapshot body) and, on stderr, `skipped <n>`: the property test that
//! holds the feed server's encoder to the filter's parser.

use std::io::{BufRead, Write};

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dump = args.first().is_some_and(|a| a == "--dump");
    if dump {
        args.remove(0);
    }
    let Some(path) = args.first().cloned() else {
        eprintln!("usage: policy-decide [--dump] SNAPSHOT < queries");
        return std::process::ExitCode::from(2);
    };
    let body = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut policy = dnspolicy::Policy::default();
    let applied = match policy.apply_body(&body, usize::MAX) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{path}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if dump {
        eprintln!("skipped {}", applied.skipped);
        let mut out = std::io::stdout();
        return if out.write_all(&policy.to_snapshot()).is_ok() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) };
    }
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines().map_while(Result::ok) {
        let mut f = line.split('\t');
        let (name, ns, wl) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let now = f.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let written = match policy.decide(name, ns, wl, now) {
            Some(d) => writeln!(out, "{}\t{}", d.action.as_str(), if d.name.is_empty() { "." } else { d.name }),
            None => writeln!(out, "allow\t-"),
        };
        if written.is_err() {
            return std::process::ExitCode::from(1);
        }
    }
    let _ = out.flush();
    std::process::ExitCode::SUCCESS
}
