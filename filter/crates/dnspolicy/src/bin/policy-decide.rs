//! Host tool: load a policy snapshot, answer decisions for queries on stdin.
//! `policy-decide SNAPSHOT < queries` where each query line is
//! `name<TAB>namespace<TAB>workload<TAB>now`; prints `action<TAB>matched name`
//! (`allow<TAB>-` when nothing matches). Used by the property test that holds
//! the filter's matcher to the Python reference evaluation.

use std::io::{BufRead, Write};

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: policy-decide SNAPSHOT < queries");
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
    if let Err(e) = policy.apply_body(&body, usize::MAX) {
        eprintln!("{path}: {e}");
        return std::process::ExitCode::from(1);
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
