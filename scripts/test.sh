#!/usr/bin/env bash
# Install what the tests need (Debian packages incl. redis-server, the npm OpenID provider) and run every test.
# Usage: scripts/test.sh            (CARGO_TARGET_DIR defaults to ~/.cache/authedge/target)
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v node >/dev/null || need_pkgs+=(nodejs npm)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# Shared-state tests start real redis-server processes (the package also gives redis-cli).
{ command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || need_pkgs+=(redis-server)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ -f tests/fixtures/oidc-provider/package-lock.json ]; then
  (cd tests/fixtures/oidc-provider && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; })
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/authedge/target}"
# Release: the optimisation level of the dist build that deployments and the load benchmark use
# (dist adds LTO, too slow to link every test binary with), and one build, not two.
cargo test --release --lib --bins --tests --examples "$@"
# Benches must keep compiling (they run with scripts/bench.sh / cargo bench).
cargo bench --no-run --quiet
