#!/bin/bash
# VNN-COMP prepare script: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Ends a curvebound run left over from an earlier instance (recorded by run_instance.sh in its pid
# file: only that process group is signalled, never processes matched by name), then warms up
# (`curvebound warmup ONNX VNNLIB`: caches, table builds) when that command exists.
set -uo pipefail
VERSION_STRING=v1
if [ "${1:-}" != "$VERSION_STRING" ]; then
    echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
    exit 1
fi
CATEGORY="${2:?category}"
ONNX_FILE="${3:?onnx file}"
VNNLIB_FILE="${4:?vnnlib file}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

echo "preparing curvebound for category '$CATEGORY', onnx '$ONNX_FILE', vnnlib '$VNNLIB_FILE'" >&2
if [ -f "$PID_FILE" ]; then
    OLD_PID="$(cat "$PID_FILE" 2>/dev/null || true)"
    if [[ "$OLD_PID" =~ ^[0-9]+$ ]] && kill -0 "$OLD_PID" 2>/dev/null; then
        echo "ending leftover curvebound process group $OLD_PID" >&2
        kill -TERM -- "-$OLD_PID" 2>/dev/null || kill -TERM "$OLD_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$OLD_PID" 2>/dev/null || kill -KILL "$OLD_PID" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
fi

if "${CURVEBOUND[@]}" warmup --help >/dev/null 2>&1; then
    "${CURVEBOUND[@]}" warmup "$ONNX_FILE" "$VNNLIB_FILE" >&2 || echo "warmup failed (continuing)" >&2
else
    echo "no 'curvebound warmup' command in this version: skipping warm-up" >&2
fi
exit 0
