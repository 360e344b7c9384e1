#!/usr/bin/env bash
# The README's "run the demo": installs what is missing and builds
# (scripts/setup.sh), then runs the three-host mesh demo in network namespaces
# (scripts/demo.ts). Needs root. Arguments go to the demo:
#   scripts/demo.sh [--timeout <seconds>] [--verbose]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/scripts/demo.js "$@"
