# Shared settings of the VNN-COMP scripts (sourced, not run).
# CURVEBOUND: the command to run; the installed `curvebound` entry point, else `python3 -m curvebound.cli`.
if [ -n "${CURVEBOUND_CMD:-}" ]; then
    read -r -a CURVEBOUND <<< "$CURVEBOUND_CMD"
elif command -v curvebound >/dev/null 2>&1; then
    CURVEBOUND=(curvebound)
else
    CURVEBOUND=("${PYTHON:-python3}" -m curvebound.cli)
fi
# Where run_instance.sh records the process group of the running verifier.
PID_FILE="${CURVEBOUND_PID_FILE:-${TMPDIR:-/tmp}/curvebound-vnncomp-$(id -u).pid}"
