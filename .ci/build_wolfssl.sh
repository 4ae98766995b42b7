#!/usr/bin/env bash
# Build wolfSSL (Debian sid source package) with DTLS 1.3 example client/server
# for interop testing.  Idempotent: skips the build when the binaries already
# exist and were built with the same version/flags.
#
# Output: <repo>/.peers/wolfssl/examples/{client/client,server/server}
#   (statically linked; run them from <repo>/.peers/wolfssl so ./certs/... work)
#
# Needs root on Debian 12 (apt-get).  Only uses the Debian mirror already
# configured in /etc/apt.  Env overrides:
#   WOLFSSL_DEBIAN_MIRROR  e.g. http://deb.debian.org/debian
#   WOLFSSL_DEBUG=1        add --enable-debug (examples then log verbosely)
#   WOLFSSL_FORCE=1        rebuild even if up to date
#   JOBS=N                 make parallelism (default: nproc)
set -euo pipefail

PEERS="$(cd "$(dirname "$0")/.." && pwd)/.peers"
DEST="$PEERS/wolfssl"
STAMP="$DEST/.build-stamp"

CONFIGURE_FLAGS=(
  --disable-shared --enable-static
  --enable-dtls --enable-dtls13 --enable-dtlscid --enable-dtls-frag-ch
  --enable-dtls-mtu --enable-hrrcookie
  --enable-session-ticket --enable-earlydata --enable-psk
  --enable-chacha --enable-aesccm
  --enable-mlkem --enable-curve25519 --enable-curve448
  --enable-ed25519 --enable-ed448
  --enable-sni --enable-alpn --enable-maxfragment
  --enable-keylog-export --enable-examples
  --enable-rpk            # raw public keys (RFC 7250): the example client's --rpk
  --enable-jobserver=no   # parallelism comes from make -j below
)
if [[ "${WOLFSSL_DEBUG:-0}" == 1 ]]; then
  CONFIGURE_FLAGS+=(--enable-debug)
fi

built_ok() {
  [[ -x "$DEST/examples/client/client" && -x "$DEST/examples/server/server" \
     && -f "$STAMP" && "$(cat "$STAMP")" == "${CONFIGURE_FLAGS[*]}" ]]
}

report() {
  echo "wolfSSL $(cat "$DEST/.deb-version" 2>/dev/null || echo '?') peers (run from $DEST):"
  echo "  client: $DEST/examples/client/client"
  echo "  server: $DEST/examples/server/server"
}

if [[ "${WOLFSSL_FORCE:-0}" != 1 ]] && built_ok; then
  echo "wolfSSL already built, skipping."
  report
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "error: must run as root (apt-get)" >&2
  exit 1
fi

# The Debian mirror already configured in /etc/apt (deb822 or one-line format).
find_mirror() {
  local f m
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
           /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    m="$(grep -vE '^[[:space:]]*#' "$f" \
          | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
          | head -n1 | tr -d '[:space:]' | sed 's:/*$::' || true)"
    if [[ -n "$m" ]]; then echo "$m"; return 0; fi
  done
  return 0
}
MIRROR="${WOLFSSL_DEBIAN_MIRROR:-$(find_mirror)}"
if [[ -z "$MIRROR" ]]; then
  echo "error: no Debian mirror found in /etc/apt; set WOLFSSL_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "Using Debian mirror: $MIRROR"

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  ca-certificates autoconf automake libtool make gcc libc6-dev

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Separate source list AND separate list/cache dirs, so the sid index neither
# replaces nor pollutes the system's bookworm package lists.
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/dl"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR sid main" \
  > "$WORK/sid-src.list"
APT_SID=(
  -oDir::Etc::SourceList="$WORK/sid-src.list"
  -oDir::Etc::SourceParts=/dev/null
  -oDir::State::Lists="$WORK/lists"
  -oDir::Cache="$WORK/cache"
  -oAPT::Sandbox::User=root
)
apt-get "${APT_SID[@]}" update
# apt verifies every file against the signed Sources index.  The .dsc /
# .debian.tar.xz may 404 on some mirrors; the orig tarball is all we need.
(cd "$WORK/dl" && apt-get "${APT_SID[@]}" source --download-only wolfssl) \
  || echo "warning: apt-get source reported errors; continuing if orig tarball is present" >&2

shopt -s nullglob
tarballs=("$WORK"/dl/wolfssl_*.orig.tar.{gz,xz,bz2})
shopt -u nullglob
case "${#tarballs[@]}" in
  1) ;;
  0) echo "error: wolfssl orig tarball was not downloaded" >&2; exit 1 ;;
  *) echo "error: several orig tarballs: ${tarballs[*]}" >&2; exit 1 ;;
esac
TARBALL="${tarballs[0]}"
VERSION="$(basename "$TARBALL" | sed -E 's/^wolfssl_(.*)\.orig\.tar\..*$/\1/')"
echo "Building wolfSSL $VERSION from $(basename "$TARBALL")"

rm -rf "$DEST"
mkdir -p "$DEST"
tar -xf "$TARBALL" -C "$DEST" --strip-components=1
echo "$VERSION" > "$DEST/.deb-version"

cd "$DEST"
./autogen.sh
./configure "${CONFIGURE_FLAGS[@]}"
make -j"${JOBS:-$(nproc)}"
[[ -x examples/client/client && -x examples/server/server ]]
echo "${CONFIGURE_FLAGS[*]}" > "$STAMP"

report
