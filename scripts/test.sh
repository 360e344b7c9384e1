#!/usr/bin/env bash
# Runs the whole suite: installs what it needs, builds, runs unit, simulation
# and end-to-end tests, and ends with one line "N passed, N failed" counting
# test cases (the subtests of each file; a file that crashes counts as one failure).
#
# Usage: scripts/test.sh [tap file globs...]   (default: every test file)
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

if [ $# -gt 0 ]; then
  files=("$@")
else
  # From the sources, so a stale compiled file of a deleted test never runs.
  mapfile -t files < <(ls test/unit/*.test.ts test/sim/*.test.ts test/e2e/*.test.ts 2>/dev/null | sed 's#^#dist/#; s#\.ts$#.js#')
fi

log=$(mktemp /tmp/weave-test.XXXXXX)
trap 'rm -f "$log"' EXIT
# One file at a time: end-to-end tests build namespaces and start daemons, and
# two cores are not enough to run them side by side without timing noise.
npx tap --jobs=1 --reporter=tap --timeout=600 "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# A test case is a test point one level below a file (4 spaces of indent).
passed=$(grep -cE '^    ok [0-9]+' "$log")
failed=$(grep -cE '^    not ok [0-9]+' "$log")
# A file that failed without reporting any failing case (crash, timeout) still counts once.
crashed=$(awk '
  /^    not ok [0-9]+/ { sub_fail = 1 }
  /^(not )?ok [0-9]+ - / { if ($1 == "not" && !sub_fail) n++; sub_fail = 0 }
  END { print n + 0 }' "$log")
failed=$((failed + crashed))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
