#!/bin/bash
# VNN-COMP run script: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# Runs `curvebound verify ONNX VNNLIB --timeout T --result RESULTS_FILE`, where T leaves
# CURVEBOUND_TIMEOUT_MARGIN seconds (default 2) of TIMEOUT for start-up and writing the result.
# The verdict is the first line of RESULTS_FILE; if curvebound fails without writing one, 'error' is
# written (or 'timeout' if it was the wall clock).
set -uo pipefail
VERSION_STRING=v1
if [ "${1:-}" != "$VERSION_STRING" ]; then
    echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
    exit 1
fi
CATEGORY="${2:?category}"
ONNX_FILE="${3:?onnx file}"
VNNLIB_FILE="${4:?vnnlib file}"
RESULTS_FILE="${5:?results file}"
TIMEOUT="${6:?timeout}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

MARGIN="${CURVEBOUND_TIMEOUT_MARGIN:-2}"
VERIFY_TIMEOUT="$(awk -v t="$TIMEOUT" -v m="$MARGIN" 'BEGIN { v = t - m; if (v < 1) v = 1; print v }')"
echo "curvebound: category '$CATEGORY', timeout ${TIMEOUT}s (verifier ${VERIFY_TIMEOUT}s)" >&2
rm -f "$RESULTS_FILE"

# Own process group, recorded so that prepare_instance.sh can end exactly this run if it is left over.
setsid "${CURVEBOUND[@]}" verify "$ONNX_FILE" "$VNNLIB_FILE" --timeout "$VERIFY_TIMEOUT" \
    --result "$RESULTS_FILE" &
CHILD=$!
echo "$CHILD" > "$PID_FILE"
wait "$CHILD"
STATUS=$?
rm -f "$PID_FILE"

if [ ! -s "$RESULTS_FILE" ]; then
    echo "curvebound exited with status $STATUS without a result" >&2
    if [ "$STATUS" -eq 124 ] || [ "$STATUS" -eq 137 ]; then echo timeout > "$RESULTS_FILE"; else echo error > "$RESULTS_FILE"; fi
fi
exit 0
