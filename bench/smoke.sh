#!/usr/bin/env bash
# The benchmark harness in miniature, for CI: every scenario on tiny data with the debug
# build, a few seconds, no timing goals. It fails when a scenario breaks (a run that does
# not delete and archive everything, a simulator that does not start, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 bench/bench.py --smoke
