#!/usr/bin/env bash
# Throughput bench: weave against wireguard-go (and tinc, nebula) between two
# simulated hosts in network namespaces (scripts/bench.ts). Needs root.
# Installs what is missing and builds (scripts/setup.sh), installs the
# reference overlays from Debian, then runs the bench. Arguments go to it:
#   scripts/bench.sh [--seconds N] [--rounds N] [--overlays wireguard-go,tinc,nebula|none] [--verbose]
set -euo pipefail
cd "$(dirname "$0")/.."
# tsc emits even when some file has a type error, so a failing setup (often a
# type error in a file being edited elsewhere) stops the bench only if it left
# nothing to run.
if ! bash scripts/setup.sh; then
  if [ -f dist/scripts/bench.js ] && [ -f dist/cli/weave.js ] && [ -f build/Release/weave_native.node ]; then
    echo "bench: scripts/setup.sh reported errors (see above); running with what it built" >&2
  else
    echo "bench: scripts/setup.sh failed and left nothing to run" >&2
    exit 1
  fi
fi

# Required: iperf3 and ss for measuring, wireguard-go + wg for the reference.
need=()
for pair in iperf3:iperf3 ss:iproute2 ping:iputils-ping wireguard-go:wireguard-go wg:wireguard-tools; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
# Optional: tinc and nebula; the bench skips whichever is missing.
optional=()
for pair in tincd:tinc nebula:nebula nebula-cert:nebula; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || optional+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing Debian packages: ${need[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ ${#optional[@]} -gt 0 ]; then
    mapfile -t optional < <(printf '%s\n' "${optional[@]}" | sort -u)
    echo "bench: installing optional Debian packages: ${optional[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null 2>&1 \
      || echo "bench: could not install ${optional[*]}; the bench will skip them" >&2
  fi
fi

exec node dist/scripts/bench.js "$@"
