#!/usr/bin/env bash
# Load benchmark: upstream direct vs HAProxy vs nginx vs authedge routes (memory state and
# Redis-shared state), and HTTP/2 over TLS (h2load) authedge vs HAProxy, on 127.0.0.1 only.
# Usage: scripts/loadbench.sh   (DURATION=5 REPEATS=7 CONNS=50 to change the run)
#        PROFILE=release scripts/loadbench.sh   (the release build: no fat-LTO dist build; default
#        PROFILE=dist, what you deploy; the figures of a release run are a few per cent lower)
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for c in wrk haproxy nginx cmake redis-server h2load; do command -v $c >/dev/null || missing+=($c); done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=(); for c in "${missing[@]}"; do
    case $c in nginx) pkgs+=(nginx-light) ;; h2load) pkgs+=(nghttp2-client) ;; *) pkgs+=("$c") ;; esac
  done
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# The signed benchmark signs its tokens with Python's cryptography.
python3 -c 'import cryptography' 2>/dev/null || apt-get install -y -qq python3-cryptography >/dev/null 2>&1 \
  || python3 -m pip install -q cryptography
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/authedge/target}"
PROFILE="${PROFILE:-dist}"
case $PROFILE in
  dist) cargo build --profile dist --quiet --bin authedge --example bare_proxy ;;
  release) cargo build --release --quiet --bin authedge --example bare_proxy ;;
  *) echo "PROFILE must be dist or release, not '$PROFILE'" >&2; exit 2 ;;
esac
export PROFILE
exec python3 scripts/loadbench.py "$CARGO_TARGET_DIR/$PROFILE/authedge" "$CARGO_TARGET_DIR/$PROFILE/examples/bare_proxy"
