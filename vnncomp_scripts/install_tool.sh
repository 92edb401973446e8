#!/bin/bash
# VNN-COMP install script: install_tool.sh v1
# Installs curvebound (this checkout) with pip into the current Python environment.
set -euo pipefail
VERSION_STRING=v1
if [ "${1:-}" != "$VERSION_STRING" ]; then
    echo "expected first argument (version string) '$VERSION_STRING', got '${1:-}'" >&2
    exit 1
fi
TOOL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
echo "installing curvebound from $TOOL_DIR with $PYTHON" >&2
"$PYTHON" -m pip install --upgrade pip >&2
"$PYTHON" -m pip install -e "$TOOL_DIR" >&2
"$PYTHON" -m curvebound.cli --version
