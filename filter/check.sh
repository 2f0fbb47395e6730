#!/usr/bin/env bash
# Host checks of the filter: clippy (no unwrap/expect/panic/indexing), unit
# tests of the parser, config and event code, and a 1M-input fuzz smoke run
# seeded with the shared malformed-message corpus. The 10M-input run quoted in
# filter/README.md is the same binary with a larger count.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
# clippy comes with the machine's rustup toolchain, a different rustc than
# Debian's 1.96 used for the build: it runs with rustup's binaries first on
# PATH and gets its own target folder.
( export PATH="$HOME/.cargo/bin:$PATH"; unset RUSTC RUSTC_BOOTSTRAP
  CARGO_TARGET_DIR="$HERE/target/clippy" cargo clippy --workspace --lib --bins -q -- -D warnings )
export PATH="/usr/bin:$PATH"
out="$(/usr/bin/cargo test --workspace -q 2>&1)" || { echo "$out"; exit 1; }
echo "$out" | grep -E "^test result: ok. [1-9]"
/usr/bin/cargo build --profile fuzz -p dnswire --bin fuzz-dnswire -q
SEEDS="$HERE/../../shared/data/captures/wire"
./target/fuzz/fuzz-dnswire "${FUZZ_ITERATIONS:-1000000}" "$SEEDS"
/usr/bin/cargo build --profile fuzz -p dnsguard-native --bin fuzz-native -q
./target/fuzz/fuzz-native "${FUZZ_ITERATIONS:-1000000}" "$SEEDS"
