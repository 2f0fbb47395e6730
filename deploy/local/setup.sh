#!/usr/bin/env bash
# Install everything dnsguard needs on this machine, idempotently:
#   - Debian packages: redis-server, Java 17, Maven, openssl, unbound (only if missing)
#   - the Python virtualenv .venv with dnsguard and its dev tools
#   - the pinned Apache Kafka jars from Maven Central (cached under ~/.cache/dnsguard)
# A second run with nothing changed takes a few seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${DNSGUARD_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v openssl >/dev/null || need_apt+=(openssl)  # test certificates for DoT
[ -x /usr/sbin/unbound ] || need_apt+=(unbound)  # a real resolver loading the published RPZ zone in tests
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's package may start a system redis on 6379; dnsguard runs its own.

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
deps_hash="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
marker="$VENV/.dnsguard-deps-$deps_hash"
if [ ! -f "$marker" ]; then
  log "installing Python dependencies"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
  rm -f "$VENV"/.dnsguard-deps-*
  touch "$marker"
else
  # Re-point the editable install at this checkout (cheap, no dependency resolution).
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
fi

log "Kafka jars"
"$VENV/bin/dnsguard" stack install

if [ -f "$ROOT/filter/build.sh" ]; then
  log "building the Envoy filter (proxy-wasm) and the UDP module (dynamic module)"
  "$ROOT/filter/build.sh"
  "$ROOT/filter/build.sh" native
fi
log "ready"
