#!/usr/bin/env bash
# The main job on a simulated s390x machine, step by step.
set -euo pipefail
PY=${PY:-python3}
OUT=${DEMO_DIR:-out/demo}
rm -rf "$OUT" && mkdir -p "$OUT"
run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

run $PY -m s390_machine.cli create "$OUT/machine" --memory 1G --cpus 2 --crashkernel 256M
run $PY -m s390_machine.cli show "$OUT/machine"
