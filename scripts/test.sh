#!/usr/bin/env bash
# Install what the tests need (Debian packages, the npm OpenID provider) and run every test.
# Usage: scripts/test.sh   (builds in the repository's target/, the same directory as the
# README's `cargo run --release`, so the second command reuses the first one's dependencies;
# set CARGO_TARGET_DIR to build elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

# What a bare Debian machine lacks: cmake and a C/C++ compiler (aws-lc, mimalloc), node and npm
# (the OpenID provider fixture), openssl (test keys), redis-server (shared state), chromium and
# chromium-driver (the oidc browser login test).
need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v cc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v c++ >/dev/null || need_pkgs+=(g++)
command -v make >/dev/null || need_pkgs+=(make)
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# Shared-state tests start real redis-server processes (the package also gives redis-cli).
{ command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || need_pkgs+=(redis-server)
# The oidc browser test drives a real headless Chromium through chromedriver.
{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || need_pkgs+=(chromium chromium-driver)
# Ingress tests (tests/ingress.rs, tests/grpc_ws.rs): curl and nghttp speak HTTP/2; Python runs
# the real gRPC (grpcio) and WebSocket (websockets) servers and clients.
command -v curl >/dev/null || need_pkgs+=(curl)
command -v nghttp >/dev/null || need_pkgs+=(nghttp2-client)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-pip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null; then
    SUDO="sudo"
  else
    echo "error: missing ${need_pkgs[*]}, and this user is not root and has no sudo;" >&2
    echo "       install them as root: apt-get install ${need_pkgs[*]}" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

python3 -c 'import grpc, websockets' 2>/dev/null \
  || python3 -m pip install --quiet grpcio websockets \
  || python3 -m pip install --quiet --break-system-packages grpcio websockets

if [ -f tests/fixtures/oidc-provider/package-lock.json ]; then
  (cd tests/fixtures/oidc-provider && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; })
fi

# Release: the optimisation level of the dist build that deployments and the load benchmark use
# (dist adds LTO, too slow to link every test binary with), and one build, not two.
cargo test --release --lib --bins --tests --examples "$@"
# Benches must keep compiling (they run with scripts/bench.sh / cargo bench).
cargo bench --no-run --quiet
