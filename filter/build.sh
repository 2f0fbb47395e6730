#!/usr/bin/env bash
# Build the dnsguard Envoy filter (.wasm) from source, installing the toolchain
# if it is missing. Toolchain: Debian's rustc-web/cargo-web 1.96 with the Rust
# standard library sources (rust-web-src), std rebuilt for wasm32-unknown-unknown
# with -Zbuild-std (RUSTC_BOOTSTRAP), linked with rust-lld from the machine's
# rustup toolchain, or Debian's wasm-ld. See filter/README.md for why.
#
# Output: filter/target/wasm32-unknown-unknown/release/dnsguard_filter.wasm
# (`build.sh wasm-floor` builds the benchmark's floor module instead;
# `build.sh native` the native dynamic module (UDP listener and network filter), filter/target/release/libdnsguard_native.so,
# `build.sh native-floor` the benchmark's empty dynamic module (libdnsguard_native_floor.so),
# for this machine's architecture with the same toolchain).
set -euo pipefail
PACKAGE="${1:-dnsguard-filter}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '\033[1m[filter]\033[0m %s\n' "$*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

if [ ! -x /usr/bin/cargo ] || [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
  log "installing Debian's rustc-web, cargo-web, rust-web-src"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    rustc-web cargo-web rust-web-src >/dev/null
fi

linker=""
for cand in "$HOME"/.rustup/toolchains/*/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld; do
  [ -x "$cand" ] && { linker="$cand"; break; }
done
if [ -z "$linker" ]; then
  linker="$(command -v wasm-ld || ls /usr/bin/wasm-ld-* 2>/dev/null | sort -V | tail -1 || true)"
fi
if [ -z "$linker" ]; then
  log "installing Debian's lld for wasm-ld"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends lld >/dev/null
  linker="$(command -v wasm-ld || ls /usr/bin/wasm-ld-* | sort -V | tail -1)"
fi

export PATH="/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc
if [ "$PACKAGE" = native ] || [ "$PACKAGE" = native-floor ]; then
  cd "$HERE"
  crate="dnsguard-native"; lib="dnsguard_native"
  [ "$PACKAGE" = native-floor ] && { crate="native-floor"; lib="dnsguard_native_floor"; }
  log "cargo build ($crate, a dynamic module, $(uname -m))"
  /usr/bin/cargo build --locked --release -p "$crate" -q
  out="$HERE/target/release/lib$lib.so"
  log "built $out ($(stat -c %s "$out") bytes)"
  exit 0
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker"
cd "$HERE"
log "cargo build (wasm32-unknown-unknown, build-std, linker $(basename "$linker"))"
/usr/bin/cargo build --locked --release -p "$PACKAGE" \
  --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort -q
out="$HERE/target/wasm32-unknown-unknown/release/${PACKAGE//-/_}.wasm"
log "built $out ($(stat -c %s "$out") bytes)"
