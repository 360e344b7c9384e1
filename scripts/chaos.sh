#!/usr/bin/env bash
# The README's "run the chaos suite": installs what is missing and builds
# (scripts/setup.sh), then runs scripts/chaos.ts: simulated hosts with
# containers, a schedule of faults for a fixed time, and a table of figures at
# the end. Needs root. Exit status 1 when a must-be-zero figure is not.
#   scripts/chaos.sh [--duration 300] [--hosts 5] [--seed N] [--faults flap,loss,kill,partition,remove]
#                    [--timings fast|default] [--json FILE] [--verbose]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/scripts/chaos.js "$@"
