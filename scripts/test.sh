#!/usr/bin/env bash
# Runs the whole suite: installs what it needs, builds, runs unit, simulation
# and end-to-end tests, and ends with "N skipped" (then each skip's reason, one
# per line) and one last line "N passed, N failed" counting test cases (the
# subtests of each file; a file that crashes counts as one failure). Skipped
# cases are not counted as passed. Exits non-zero on any failure.
#
# Usage: scripts/test.sh [tap file globs...]   (default: every test file)
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

# End-to-end files that may run beside the others: no timing bounds that a
# busy second core could break (outage, loss or rate checks), mostly waiting
# on daemons and engines. Every other end-to-end file, and any new one until
# it is added here, runs in the lane that has the timing-sensitive files one
# at a time.
BESIDE_OTHERS=(
  api-access attach cni-containerd cni-plugin cni-podman corrupt-state dns-docker docker-attach
  docker-auto-attach docker-mesh docker-plugin dualstack expose netns resolv-symlink stop-unresponsive
  tap-device udp-batch udp-no-checksum
)

if [ $# -gt 0 ]; then
  side=()
  alone=("$@")
else
  # From the sources, so a stale compiled file of a deleted test never runs.
  mapfile -t side < <(ls test/unit/*.test.ts test/sim/*.test.ts 2>/dev/null | sed 's#^#dist/#; s#\.ts$#.js#')
  alone=()
  for f in $(ls test/e2e/*.test.ts 2>/dev/null); do
    name=$(basename "$f" .test.ts)
    if [[ " ${BESIDE_OTHERS[*]} " == *" $name "* ]]; then side+=("dist/test/e2e/$name.test.js"); else alone+=("dist/test/e2e/$name.test.js"); fi
  done
fi

log=$(mktemp /tmp/weave-test.XXXXXX)
side_log=$(mktemp /tmp/weave-test-side.XXXXXX)
side_pid=""
trap '[ -n "$side_pid" ] && kill "$side_pid" 2>/dev/null; rm -f "$log" "$side_log" "$side_log.rc"' EXIT
status=0
# Two lanes, one file at a time in each, side by side on two cores: the
# timing-sensitive end-to-end files in one (its output streams), and in the
# other the unit and simulation files (injected clocks: load changes nothing
# they see) followed by the end-to-end files listed above (its output is
# printed when both lanes are done).
# The first tap run on a fresh checkout builds tap's plugin set into
# node_modules; two runs starting at once clobber each other's build, so the
# side lane's first file runs alone first.
if [ ${#side[@]} -gt 1 ] && [ ${#alone[@]} -gt 0 ]; then
  npx tap --jobs=1 --reporter=tap --timeout=600 "${side[0]}" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  side=("${side[@]:1}")
fi
if [ ${#side[@]} -gt 0 ]; then
  ( npx tap --jobs=1 --reporter=tap --timeout=600 "${side[@]}" >"$side_log" 2>&1; echo $? >"$side_log.rc" ) &
  side_pid=$!
fi
if [ ${#alone[@]} -gt 0 ]; then
  npx tap --jobs=1 --reporter=tap --timeout=600 "${alone[@]}" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [ -n "$side_pid" ]; then
  wait "$side_pid"
  side_pid=""
  cat "$side_log"
  cat "$side_log" >>"$log"
  [ "$(cat "$side_log.rc" 2>/dev/null)" = "0" ] || status=1
fi

# A test case is a test point one level below a file (4 spaces of indent). A
# case with a SKIP or TODO directive ("ok N - name # SKIP reason") is skipped,
# neither passed nor failed (a TODO marks a case that is expected not to hold
# yet, so its outcome proves nothing), and so is a whole file skipped at the
# top level (e.g. t.plan(0, why)).
# A file that failed without reporting any failing case (crash, timeout) still
# counts as one failure. Prints "passed failed skipped", then one line per
# skip, then one per failure (CI may show only the tail of the output, so the
# failures are named where it looks).
summary=$(awk '
  function directive(line) { return match(line, / # ([Ss][Kk][Ii][Pp]|[Tt][Oo][Dd][Oo])([ :]|$)/) }
  function skipped_case(where, line,   name, why) {
    directive(line)
    name = substr(line, 1, RSTART - 1); sub(/^ *(not )?ok [0-9]+( - )?/, "", name)
    why = substr(line, RSTART + RLENGTH); sub(/^[ :]+/, "", why)
    reasons[++skipped] = "  " where (name != "" && name != where ? ": " name : "") (why != "" ? ": " why : "")
  }
  /^# Subtest: / { file = substr($0, 12) }
  /^    ok [0-9]+/ { if (directive($0)) skipped_case(file, $0); else passed++ }
  /^    not ok [0-9]+/ {
    if (directive($0)) skipped_case(file, $0)
    else { name = $0; sub(/^ *not ok [0-9]+( - )?/, "", name); sub(/ # time=.*$/, "", name); failures[++failed] = "  " file ": " name; sub_fail = 1 }
  }
  /^ok [0-9]+/ { if (directive($0)) skipped_case(file, $0) }
  /^(not )?ok [0-9]+ - / {
    if ($1 == "not" && !sub_fail) { name = $0; sub(/^not ok [0-9]+ - /, "", name); sub(/ # time=.*$/, "", name); failures[++failed] = "  " name ": failed without a failing case (crash or timeout)" }
    sub_fail = 0
  }
  END {
    print passed + 0, failed + 0, skipped + 0
    for (i = 1; i <= skipped; i++) print reasons[i]
    for (i = 1; i <= failed; i++) print failures[i]
  }' "$log")
read -r passed failed skipped <<<"$(head -n 1 <<<"$summary")"
failures=$(tail -n +$((2 + skipped)) <<<"$summary")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; failures="  a tap run exited non-zero without a failing case"; fi
echo "$skipped skipped"
tail -n +2 <<<"$summary" | head -n "$skipped"
if [ "$failed" -gt 0 ]; then echo "failed:"; echo "$failures"; fi
# CI reads this last line.
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
