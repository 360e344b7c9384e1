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

if [ $# -gt 0 ]; then
  parallel=()
  serial=("$@")
else
  # From the sources, so a stale compiled file of a deleted test never runs.
  mapfile -t parallel < <(ls test/unit/*.test.ts test/sim/*.test.ts 2>/dev/null | sed 's#^#dist/#; s#\.ts$#.js#')
  mapfile -t serial < <(ls test/e2e/*.test.ts 2>/dev/null | sed 's#^#dist/#; s#\.ts$#.js#')
fi

log=$(mktemp /tmp/weave-test.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
# Unit and simulation tests run in one process each on injected clocks: two
# at a time use both cores without changing what they see. End-to-end tests
# run one at a time: they build namespaces and start daemons whose timers are
# real, and two cores are not enough to run them side by side without noise.
if [ ${#parallel[@]} -gt 0 ]; then
  npx tap --jobs=2 --reporter=tap --timeout=600 "${parallel[@]}" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [ ${#serial[@]} -gt 0 ]; then
  npx tap --jobs=1 --reporter=tap --timeout=600 "${serial[@]}" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

# A test case is a test point one level below a file (4 spaces of indent). A
# case with a SKIP or TODO directive ("ok N - name # SKIP reason") is skipped,
# neither passed nor failed (a TODO marks a case that is expected not to hold
# yet, so its outcome proves nothing), and so is a whole file skipped at the
# top level (e.g. t.plan(0, why)).
# A file that failed without reporting any failing case (crash, timeout) still
# counts as one failure. Prints "passed failed skipped", then one line per skip.
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
  /^    not ok [0-9]+/ { if (directive($0)) skipped_case(file, $0); else { failed++; sub_fail = 1 } }
  /^ok [0-9]+/ { if (directive($0)) skipped_case(file, $0) }
  /^(not )?ok [0-9]+ - / { if ($1 == "not" && !sub_fail) failed++; sub_fail = 0 }
  END {
    print passed + 0, failed + 0, skipped + 0
    for (i = 1; i <= skipped; i++) print reasons[i]
  }' "$log")
read -r passed failed skipped <<<"$(head -n 1 <<<"$summary")"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$skipped skipped"
tail -n +2 <<<"$summary"
# CI reads this last line.
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
