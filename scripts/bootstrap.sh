#!/usr/bin/env bash
# Install what `make demo` (bootstrap.sh demo) or `make test` (bootstrap.sh test) needs, on a fresh
# Debian machine as root or in a virtual environment as a normal user.
#   demo: the package itself, editable (its C extension if a compiler is there; else the pure-Python
#         fallback, said once at run time).
#   test: the same with the test and codec extras, pinned by constraints/ci.txt, and the Debian
#         packages the real-peer tests use. As root they are installed with apt-get; otherwise each
#         missing one is named (the tests that need it fail, naming it again).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: bootstrap.sh demo|test}
PY=${PY:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1 DEBIAN_FRONTEND=noninteractive

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian package -> a file that shows it is installed
declare -A APT_PROBE=(
    [gcc]=/usr/bin/gcc
    [make]=/usr/bin/make
    [liblzo2-dev]=/usr/include/lzo/lzo1x.h
    [elfutils]=/usr/bin/eu-readelf
    [binutils]=/usr/bin/readelf
    [gdb-multiarch]=/usr/bin/gdb-multiarch
    [python3-libkdumpfile]=/usr/lib/python3/dist-packages/kdumpfile
    [librsvg2-bin]=/usr/bin/rsvg-convert
    [qemu-user-static]=/usr/bin/qemu-s390x-static
    [fuse3]=/usr/bin/fusermount3
)
case $what in
    demo) wanted=(gcc) ;;
    test) wanted=(gcc make liblzo2-dev elfutils binutils gdb-multiarch python3-libkdumpfile librsvg2-bin
                  qemu-user-static fuse3) ;;
    *) say "usage: bootstrap.sh demo|test"; exit 2 ;;
esac
missing=()
for pkg in "${wanted[@]}"; do [ -e "${APT_PROBE[$pkg]}" ] || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "apt-get install ${missing[*]}"
        if [ "$what" = test ]; then   # the real-world tests fetch s390x packages (kernels, peers)
            dpkg --print-foreign-architectures | grep -qx s390x || dpkg --add-architecture s390x
        fi
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        missing=()
        for pkg in "${wanted[@]}"; do [ -e "${APT_PROBE[$pkg]}" ] || missing+=("$pkg"); done
    fi
    for pkg in "${missing[@]}"; do
        case $pkg in
            gcc) say "no C compiler (Debian package gcc): the native extension is skipped, the suite runs on its pure-Python fallback" ;;
            liblzo2-dev) say "python-lzo (the [lzo] extra) builds against liblzo2-dev, which is missing: apt-get install liblzo2-dev as root; the lzo tests are skipped" ;;
            *) say "Debian package $pkg is missing (apt-get install $pkg as root): the tests that use it fail, naming it" ;;
        esac
    done
fi

$PY -m pip --version >/dev/null 2>&1 || { say "$PY has no pip: apt-get install python3-pip python3-venv, or use a venv"; exit 1; }
if [ "$what" = demo ]; then
    $PY -m pip install -q -e .
else
    extras=test,snappy,zstd,mount
    [ -e /usr/include/lzo/lzo1x.h ] && extras=$extras,lzo
    $PY -m pip install -q -c constraints/ci.txt -e ".[$extras]"
fi
