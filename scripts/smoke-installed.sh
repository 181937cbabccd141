#!/usr/bin/env bash
# What a user gets (issue 14): build the wheel and the sdist, install the wheel into fresh virtual
# environments and run the CLI contract there from `/` (no source tree on sys.path):
#   pinned  - the versions of constraints/ci.txt
#   lowest  - the lower bounds of pyproject.toml (constraints/lowest.txt)
#   newest  - every dependency upgraded to the newest release the registry serves, our caps ignored,
#             so a release that breaks us (like typer 0.26 dropping click) fails here the day it appears
#   nocc    - the sdist installed with no C compiler: the pure-Python fallback, said once
# usage: scripts/smoke-installed.sh [pinned lowest newest nocc]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
PY=${PY:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
envs=("$@"); [ ${#envs[@]} -gt 0 ] || envs=(pinned lowest newest nocc)
WORK=$(mktemp -d /tmp/s390-smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf '\n== smoke: %s\n' "$*"; }
die() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

say "python -m build (wheel and sdist)"
$PY -m build --version >/dev/null 2>&1 || $PY -m pip install -q "build>=1"
$PY -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; die "python -m build"; }
if grep -i -E "deprecat|SetuptoolsWarning|BuildBackendWarning" "$WORK/build.log"; then die "python -m build warned (above)"; fi
WHEEL=$(ls "$WORK"/dist/*.whl)
SDIST=$(ls "$WORK"/dist/*.tar.gz)
echo "$WHEEL"; echo "$SDIST"
$PY - "$WHEEL" "$SDIST" <<'EOF' || die "wheel/sdist contents"
import sys, tarfile, zipfile
wheel = zipfile.ZipFile(sys.argv[1]).namelist()
sdist = tarfile.open(sys.argv[2]).getnames()
need_wheel = ["native/_native", "native/_fallback.py", "vmcore/cli.py", "LICENSE"]
need_sdist = ["docs/ARCHITECTURE.md", "docs/ABI.md", "LICENSE", "native/_native.c", "constraints/ci.txt"]
missing = [n for n in need_wheel if not any(n in w for w in wheel)]
missing += [n for n in need_sdist if not any(s.endswith(n) for s in sdist)]
meta = next(w for w in wheel if w.endswith("METADATA"))
text = zipfile.ZipFile(sys.argv[1]).read(meta).decode()
if "License-Expression: MIT" not in text:
    missing.append("License-Expression: MIT in METADATA")
if missing:
    sys.exit(f"missing: {missing}")
print(f"wheel: {len(wheel)} files with the compiled extension; sdist: {len(sdist)} files with docs/")
EOF

# the contract test runs from a copy outside the source tree
mkdir -p "$WORK/t" && cp tests/test_cli_contract.py "$WORK/t/"
contract() {  # venv
    (cd / && S390_SMOKE=1 "$1/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$WORK/t" \
        -o "markers=slow: every case runs here" "$WORK/t/test_cli_contract.py")
}
venv() {  # name -> path of a fresh venv
    "$PY" -m venv "$WORK/$1" && echo "$WORK/$1"
}
pip_in() {  # venv pip-install-args...: quiet, its log shown when it fails
    local v=$1; shift
    "$v/bin/pip" install -q "$@" >"$WORK/pip.log" 2>&1 \
        || { grep -v "^WARNING: Location" "$WORK/pip.log"; die "pip install $*"; }
    grep -i "incompatible\|conflict" "$WORK/pip.log" || true    # newest: releases beyond our caps
}

for e in "${envs[@]}"; do
    case $e in
    pinned)
        say "pinned: the wheel with constraints/ci.txt"
        V=$(venv pinned)
        pip_in "$V" -c constraints/ci.txt "$WHEEL" pytest
        ;;
    lowest)
        say "lowest: the wheel with the declared lower bounds"
        V=$(venv lowest)
        pip_in "$V" -c constraints/lowest.txt "$WHEEL" pytest
        ;;
    newest)
        say "newest: every dependency at the newest release served, our upper bounds ignored"
        V=$(venv newest)
        pip_in "$V" "$WHEEL" pytest
        deps=$("$V/bin/python" - <<'EOF'
import importlib.metadata, re
for req in importlib.metadata.requires("s390-dumptools"):
    if "extra ==" not in req:
        print(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0])
EOF
)
        pip_in "$V" --upgrade $deps
        ;;
    nocc)
        say "nocc: the sdist built with no C compiler"
        V=$(venv nocc)
        CC=/bin/false CXX=/bin/false pip_in "$V" -c constraints/ci.txt "$SDIST" pytest
        (cd / && "$V/bin/vmcore" --version) | tee "$WORK/v.txt"
        grep -q "pure-Python fallback" "$WORK/v.txt" || die "--version does not name the fallback"
        ;;
    *) die "unknown environment $e (pinned lowest newest nocc)" ;;
    esac
    "$V/bin/pip" list 2>/dev/null | grep -i -E "^(typer|rich|construct|zlib-ng|click) " | tr -s ' ' | paste -sd' ' -
    contract "$V" || die "the CLI contract in the $e environment"
done
say "all passed: ${envs[*]}"
