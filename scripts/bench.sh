#!/usr/bin/env bash
# The bench, in sections, each measured side by side with its reference in
# alternating rounds:
#   throughput  weave (encrypted direct, relayed through a third host, the
#               same hop forwarded by that host's kernel instead, and the
#               plaintext kernel fast path) against wireguard-go, tinc (switch
#               mode), nebula and fastd (TAP mode), with kernel VXLAN and the
#               bare veth underlay as ceilings: iperf3 throughput and
#               retransmits, RTT idle and under load, daemons' CPU and RSS
#               (scripts/bench.ts)
#   dns         weave DNS against dnsmasq with dnsperf: local answers and
#               forwarding (scripts/bench-dns.ts)
#   attach      weave attach against weave version and node -e ''
#               (scripts/bench-attach.ts)
#   control     the control plane in simulation: a peer joins meshes of 100
#               to 1000 peers (scripts/bench-control-plane.ts; not by default)
#   memory      router RSS idle, with 100 protocol peers, and sampled over a
#               60 s transfer: first, last, min, max, slope
#               (scripts/bench-memory.ts; run it alone for longer transfers)
# then one summary table of every section's headline figures against issue
# 14's targets: a section contributes lines "SUMMARY <key> <value> <target>
# <label>" to its output (scripts/bench-summary.ts describes the format), which
# this script keeps in a temporary file and hands to bench-summary.js.
# Needs root. Installs what is missing and builds (scripts/setup.sh), installs
# the references from Debian, then runs the sections. Arguments:
#   scripts/bench.sh [--quick] [--sections throughput,dns,attach] [--seconds N] [--rounds N]
#                    [--overlays weave-hosts,weave-relayed,weave-forwarded,weave-fastdp,wireguard-go,tinc,nebula,fastd,vxlan,veth|none] [--verbose]
# --quick is one round of each; the other options go to every section (each
# ignores what is not its own; --overlays and --verbose are the throughput's).
# Ctrl-C stops the running section (which removes what it made) and the bench.
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

# Required: iperf3, ss and fping for measuring, wireguard-go + wg for the reference.
need=()
for pair in iperf3:iperf3 ss:iproute2 ping:iputils-ping fping:fping wireguard-go:wireguard-go wg:wireguard-tools dnsperf:dnsperf dnsmasq:dnsmasq-base; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
# Optional: tinc, nebula and fastd; the bench skips whichever is missing.
optional=()
for pair in tincd:tinc nebula:nebula nebula-cert:nebula fastd:fastd; do
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

sections=throughput,dns,attach,memory
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sections) sections="$2"; shift 2 ;;
    --sections=*) sections="${1#--sections=}"; shift ;;
    --quick) args+=(--rounds 1); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
# The DNS and attach sections take only --rounds and --seconds.
own=()
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --rounds|--seconds) own+=("${args[$i]}" "${args[$((i + 1))]}"); i=$((i + 1)) ;;
  esac
done
log=$(mktemp /tmp/weave-bench.XXXXXX)
trap 'rm -f "$log"' EXIT

# Every section is a node process that removes what it made on Ctrl-C and then
# exits 128 + the signal's number; such an exit ends the bench, so no further
# section starts and no summary of a partial run is printed.
node() {
  command node "$@" && return 0
  local rc=$?
  [ "$rc" -lt 128 ] || exit "$rc"
  return "$rc"
}
run_sections() {
  local status=0 s
  IFS=, read -r -a wanted <<< "$sections"
  for s in "${wanted[@]}"; do
    case "$s" in
      throughput) node dist/scripts/bench.js "${args[@]}" || status=1 ;;
      dns) node dist/scripts/bench-dns.js "${own[@]}" || status=1 ;;
      attach) node dist/scripts/bench-attach.js "${own[@]}" || status=1 ;;
      control) node dist/scripts/bench-control-plane.js || status=1 ;;
      memory) node dist/scripts/bench-memory.js --transfer-seconds 60 || status=1 ;;
      *) echo "bench: unknown section $s (throughput, dns, attach, control, memory)" >&2; exit 2 ;;
    esac
  done
  return "$status"
}
# tee ignores Ctrl-C so a section's cleanup output still reaches the terminal.
set +e
run_sections | (trap '' INT; tee "$log")
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ge 128 ]; then
  echo "bench: interrupted" >&2
  exit "$status"
fi
node dist/scripts/bench-summary.js "$log" || status=1
exit "$status"
