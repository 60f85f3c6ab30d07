#!/usr/bin/env bash
# Runs the project's CUDA tests from the bundle that scripts/bench/device-bundle.sh made
# (target/device/tests) on a GPU machine: every test with "cuda" in its name in
# tests/detector.rs and tests/element_engine.rs. Those tests skip themselves where CUDA does
# not load; here a skip is a failure, since the machine has a GPU. Logs go to $OUT.
#
#   ./scripts/bench/device-tests.sh      # about a minute; exit 0 when every test passed
set -euo pipefail
cd "$(dirname "$0")/../.."

# BUNDLE, OUT and the environment the bundle runs in.
. scripts/bench/device-env.sh

status=0
for test in "$BUNDLE"/tests/*; do
  name=$(basename "$test")
  log="$OUT/tests-$name.log"
  if ! "$test" cuda --nocapture --test-threads=1 >"$log" 2>&1; then
    echo "$name: FAILED (see $log)"
    status=1
  elif grep -q "no CUDA device: skipped" "$log"; then  # unmask::testing::CUDA_SKIPPED
    echo "$name: skipped, CUDA did not load (see $log)"
    status=1
  elif ! grep -Eq "^test result: ok\. [1-9][0-9]* passed" "$log"; then
    echo "$name: no test ran (see $log)"
    status=1
  else
    echo "$name: $(grep -E '^test result' "$log")"
  fi
done
exit "$status"
