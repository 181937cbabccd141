#!/usr/bin/env bash
# Fetch Debian packages for architecture s390x into the cache (never into the repo) and unpack them.
# usage: fetch-s390x-debs.sh PACKAGE...   (a package name or a regex like 'linux-image-6.1.0-[0-9]+-s390x')
# Prints the unpacked directory of each package, one per line.
set -euo pipefail
CACHE=${S390_DUMPTOOLS_CACHE:-$HOME/.cache/s390-dumptools}
mkdir -p "$CACHE/debs" "$CACHE/root"
cd "$CACHE/debs"

fail() { echo "fetch-s390x-debs: $*" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg >/dev/null \
    || fail "apt-get and dpkg not found: the real s390x packages come from Debian's archive (a Debian or Ubuntu host)"
root=0; [ "$(id -u)" = 0 ] && root=1
updated=0
update() {
    [ $updated = 1 ] && return 0
    [ $root = 1 ] || fail "Debian's package lists lack the s390x packages and refreshing them needs root: run 'apt-get update' as root once"
    apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed (is Debian's archive reachable?)"
    updated=1
}
if ! dpkg --print-foreign-architectures | grep -qx s390x; then
    [ $root = 1 ] || fail "Debian's s390x architecture is not enabled and enabling it needs root: run 'dpkg --add-architecture s390x && apt-get update' as root once"
    dpkg --add-architecture s390x
    update
fi
resolve() {  # newest package whose name matches $1 (exact name or regex)
    apt-cache search --names-only "^$1\$" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1
}
for pkg in "$@"; do
    name=$(resolve "$pkg")
    if [ -z "$name" ]; then update; name=$(resolve "$pkg"); fi
    if [ -z "$name" ]; then
        echo "fetch-s390x-debs: no Debian package matches $pkg" >&2
        exit 1
    fi
    deb=$(ls -1 "${name}"_*_s390x.deb "${name}"_*_all.deb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$deb" ]; then
        apt-get download -qq "${name}:s390x" >/dev/null 2>&1 || apt-get download -qq "${name}" >/dev/null 2>&1 \
            || { echo "fetch-s390x-debs: apt-get download $name:s390x failed" >&2; exit 1; }
        deb=$(ls -1 "${name}"_*.deb | sort -V | tail -n 1)
    fi
    dest="$CACHE/root/${deb%.deb}"
    if [ ! -e "$dest/.unpacked" ]; then
        rm -rf "$dest" && mkdir -p "$dest"
        dpkg-deb -x "$deb" "$dest"
        touch "$dest/.unpacked"
    fi
    echo "$dest"
done
