#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine (as root) and
# builds it. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for pair in ip:iproute2 nft:nftables iperf3:iperf3 tcpdump:tcpdump ping:iputils-ping dig:dnsutils make:make g++:g++; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pair##*:}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or later is required, found $(node --version 2>/dev/null || echo none)." >&2
  echo "setup: Debian 12's own nodejs package is 18; install Node.js 20 (e.g. the nodesource or a backports build) and run again." >&2
  exit 1
fi

# A linked node_modules (a git worktree sharing the main checkout's) is left
# alone: npm ci would empty it under the other checkout's feet.
if [ -L node_modules ]; then
  :
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

addon=build/Release/weave_native.node
if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" 2>/dev/null | head -n 1)" ]; then
  echo "setup: building the native addon" >&2
  npx --no-install node-gyp rebuild >/dev/null
fi

echo "setup: building" >&2
npx tsc -p tsconfig.json
# The router's one-file bundle (scripts/bundle-router.ts), after every tsc.
node dist/scripts/bundle-router.js
chmod +x dist/cli/weave.js 2>/dev/null || true
