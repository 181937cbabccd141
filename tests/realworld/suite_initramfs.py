"""The initramfs of the suite-on-s390x run (issue 21): the suite itself in the s390x guest.

Debian's s390x Python 3.11 (python3.11-minimal, libpython3.11-minimal/-stdlib) with the shared
libraries it and its extension modules need (found through DT_NEEDED in the unpacked packages),
the suite's packages under /opt/s390dt (native/ with the extension cross-built for s390x when
the harness could build it), its dependencies under /opt/s390dt/site (the host's pure-Python
copies, PyPI's s390x wheel of pydantic-core; no zlib-ng: the suite falls back to the standard zlib), every module with its
.pyc compiled on the host, busybox and SUITE_INIT.  Kept apart from initramfs.py, whose source
keys the cached runs of the other configurations.
"""

from __future__ import annotations

import gzip
import os

from tests.realworld.initramfs import (
    MULTIARCH, PATTERN_PAGES, PRODUCTION_FACTS, _dirs, _find_lib, _read, _write_gz, base_entries, needed_libraries, newc,
    pattern_page,
)

SUITE_DIR = "opt/s390dt"            # the suite's packages; its pure-Python dependencies under site/
SUITE_PACKAGES = ("dumpkit", "meminfo_abi", "native", "s390_machine", "kexec_s390", "vmcore")
# what `import` needs of the suite's run-time dependencies (all pure Python)
SITE_MODULES = ("construct", "typer", "click", "rich", "markdown_it", "mdurl", "pygments",
                "typing_extensions", "shellingham", "annotated_doc", "pydantic", "typing_inspection",
                "annotated_types")
# typer's pydantic needs pydantic-core, a compiled module: PyPI's manylinux s390x wheel
WHEEL_MODULES = ("pydantic_core",)
PYTHON = "usr/bin/python3.11"
STDLIB = "usr/lib/python3.11"
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
               "__pycache__", "site-packages", "dist-packages"}
# what the kdump kernel saves: `vmcore save -d 31 -c`, makedumpfile's usual level (zero, cache,
# private cache, user and free pages left out), zlib-compressed kdump format
DUMP_LEVEL = 31

# python-zlib-ng has no s390x wheel on PyPI: the suite's own fallback (dumpkit/deflate.py) takes the
# standard zlib in the guest and says so in one line

SUITE_INIT = r"""#!/bin/sh
# s390-dumptools realworld guest init (PID 1): the suite itself on s390x, production and kdump kernel.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
export PYTHONPATH=/opt/s390dt:/opt/s390dt/site HOME=/tmp COLUMNS=200 TERM=dumb PYTHONDONTWRITEBYTECODE=1
TOKEN=none
for w in $(cat /proc/cmdline); do
    case "$w" in s390dt_token=*) TOKEN=${w#s390dt_token=} ;; esac
done
now() { cut -d' ' -f1 /proc/uptime; }
idle() { while true; do sleep 3600; done; }

if [ -e /proc/vmcore ]; then
    echo "S390DT-KDUMP-BEGIN $TOKEN size=$(stat -c %s /proc/vmcore) release=$(uname -r) uptime=$(now)"
    mkdir -p /dump && mount -t tmpfs -o size=192m tmpfs /dump
    echo "S390DT-RUN vmcore save -d 31 -c -o /dump/vmcore"
    python3 -m vmcore.cli save -d 31 -c --no-progress -o /dump/vmcore
    rc=$?
    size=$(stat -c %s /dump/vmcore 2>/dev/null || echo 0)
    echo "S390DT-SAVED $TOKEN rc=$rc size=$size uptime=$(now)"
    dd if=/dump/vmcore of=/dev/vda bs=1M 2>/tmp/dd.err || rc=$?
    sync
    echo "S390DT-KDUMP-DONE $TOKEN rc=$rc size=$size $(tail -n 1 /tmp/dd.err)"
    poweroff -f
    idle
fi

""" + PRODUCTION_FACTS + r"""echo "S390DT-PYTHON $(python3 -c 'import sys, native; print(sys.version.split()[0], sys.byteorder, native.describe())')"
echo "S390DT-RUN kexec-s390 status (before)"
python3 -m kexec_s390.cli status
echo "S390DT-STATUS-BEFORE rc=$?"
echo "S390DT-RUN kexec-s390 load -p /boot/kdump-image (no initrd), then unload -p"
python3 -m kexec_s390.cli load -p /boot/kdump-image --command-line "console=ttysclp0" --no-progress >/dev/null
echo "S390DT-FIRST-LOAD rc=$? loaded=$(cat /sys/kernel/kexec_crash_loaded)"
python3 -m kexec_s390.cli unload -p
echo "S390DT-UNLOAD rc=$? loaded=$(cat /sys/kernel/kexec_crash_loaded)"
echo "S390DT-RUN kexec-s390 load -p /boot/kdump-image --initrd /boot/kdump-initrd"
t0=$(now)
python3 -m kexec_s390.cli load -p /boot/kdump-image --initrd /boot/kdump-initrd \
    --command-line "console=ttysclp0 s390dt_token=$TOKEN" --no-progress
rc=$?
echo "S390DT-KEXEC rc=$rc loaded=$(cat /sys/kernel/kexec_crash_loaded) from=$t0 to=$(now)"
echo "S390DT-RUN kexec-s390 status"
python3 -m kexec_s390.cli status
echo "S390DT-STATUS rc=$?"
python3 -m kexec_s390.cli status --json | tr -d '\n' | sed 's/^/S390DT-STATUS-JSON /'
echo
echo "S390DT-MARKER-READY $TOKEN pattern pages resident" > /dev/kmsg
echo "S390DT-READY $TOKEN"
while read cmd; do
    case "$cmd" in
        panic)
            echo "S390DT-PANIC $TOKEN"
            echo "S390DT-MARKER-PANIC $TOKEN about to panic" > /dev/kmsg
            echo c > /proc/sysrq-trigger ;;
        *) echo "S390DT-UNKNOWN $cmd" ;;
    esac
done
idle
"""


def _needed_closure(binaries: list[str], roots: list[str]) -> dict[str, str]:
    """name -> path of every shared library the binaries need, transitively; a library no
    package provides is left out (its module then fails to import, as on a minimal system)."""
    found: dict[str, str] = {}
    todo = list(binaries)
    while todo:
        _interp, needed = needed_libraries(todo.pop())
        for name in needed:
            if name in found:
                continue
            try:
                found[name] = _find_lib(name, roots)
            except FileNotFoundError:
                found[name] = ""
                continue
            todo.append(found[name])
    return {k: v for k, v in found.items() if v}


def _pyc(src_path: str, name: str) -> bytes | None:
    """The module compiled by the host's Python 3.11 (same bytecode magic as the guest's 3.11),
    unchecked-hash: no mtime to compare, nothing for TCG to recompile at every boot."""
    import importlib.util
    with open(src_path, "rb") as fh:
        source = fh.read()
    try:
        code = compile(source, "/" + name, "exec", dont_inherit=True)
    except SyntaxError:
        return None
    import importlib._bootstrap_external as ext
    return ext._code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)


def _tree(src_root: str, dest: str, skip: set[str] = frozenset(), compile_py: bool = True,
          keep_so: bool = False) -> list[tuple[str, int, bytes]]:
    """Files under src_root (no .so built for another machine, no caches) at dest/..., each .py
    with its __pycache__ .pyc."""
    import sys
    entries = []
    tag = sys.implementation.cache_tag
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and d != "__pycache__")
        rel = os.path.relpath(dirpath, src_root)
        ddir = dest if rel == "." else f"{dest}/{rel}"
        entries.append((ddir, 0o040755, b""))
        pyc_dir_done = False
        for fn in sorted(filenames):
            if fn.endswith(".pyc") or (not keep_so and (fn.endswith(".so") or ".so." in fn)):
                continue
            path = os.path.join(dirpath, fn)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            entries.append((f"{ddir}/{fn}", 0o100644, _read(path)))
            if compile_py and fn.endswith(".py"):
                pyc = _pyc(path, f"{ddir}/{fn}")
                if pyc is not None:
                    if not pyc_dir_done:
                        entries.append((f"{ddir}/__pycache__", 0o040755, b""))
                        pyc_dir_done = True
                    entries.append((f"{ddir}/__pycache__/{fn[:-3]}.{tag}.pyc", 0o100644, pyc))
    return entries


def suite_entries(busybox: str, roots: list[str], repo: str, site_dirs: dict[str, str],
                  native_so: str | None) -> tuple[list[tuple[str, int, bytes]], dict]:
    """busybox, the s390x Python from Debian's packages with the libraries it needs, the suite
    (native/ with the cross-built extension when there is one) and its dependencies, SUITE_INIT."""
    entries = [e for e in base_entries(busybox) if e[0] != "init"]
    entries.append(("init", 0o100755, SUITE_INIT.encode()))
    py_root = next((r for r in roots if os.path.isfile(os.path.join(r, PYTHON))), None)
    std_root = next((r for r in roots if os.path.isfile(os.path.join(r, STDLIB, "os.py"))), None)
    dyn_root = next((r for r in roots if os.path.isdir(os.path.join(r, STDLIB, "lib-dynload"))), None)
    if not (py_root and std_root and dyn_root):
        raise FileNotFoundError("python3.11-minimal, libpython3.11-minimal and libpython3.11-stdlib "
                                "(s390x) are not all among the unpacked packages")
    entries += _dirs("usr/bin", f"{STDLIB}/lib-dynload", f"lib/{MULTIARCH}", SUITE_DIR + "/site")
    python = os.path.join(py_root, PYTHON)
    entries.append((PYTHON, 0o100755, _read(python)))
    entries += [("usr/bin/python3", 0o120777, b"python3.11"), ("bin/python3", 0o120777, b"/usr/bin/python3.11")]
    dynload = sorted(os.path.join(r, STDLIB, "lib-dynload", f) for r in roots      # minimal + stdlib
                     if os.path.isdir(os.path.join(r, STDLIB, "lib-dynload"))
                     for f in os.listdir(os.path.join(r, STDLIB, "lib-dynload")) if f.endswith(".so"))
    wheel_sos = [os.path.join(dp, f) for mod in WHEEL_MODULES if mod in site_dirs
                 for dp, _d, fs in os.walk(site_dirs[mod]) for f in fs if f.endswith(".so")]
    libs = _needed_closure([python, *dynload, *wheel_sos], roots)
    skipped = []
    for so in dynload:
        _i, needed = needed_libraries(so)
        if all(n in libs or n.startswith(("libc.so", "libm.so")) for n in needed):
            entries.append((f"{STDLIB}/lib-dynload/{os.path.basename(so)}", 0o100644, _read(so)))
        else:
            skipped.append(os.path.basename(so))
    for name, src in sorted(libs.items()):
        entries.append((f"lib/{MULTIARCH}/{name}", 0o100755, _read(src)))
    interp, _n = needed_libraries(python)
    if interp:
        target = interp.lstrip("/")
        entries += _dirs(os.path.dirname(target))
        entries.append((target, 0o100755, _read(_find_lib(os.path.basename(interp), roots))))
    for root in roots:      # the standard library is split over libpython3.11-minimal and -stdlib
        if os.path.isdir(os.path.join(root, STDLIB)):
            entries += [e for e in _tree(os.path.join(root, STDLIB), STDLIB, STDLIB_SKIP | {"lib-dynload"})
                        if e[0] != STDLIB]
    for pkg in SUITE_PACKAGES:
        entries += _tree(os.path.join(repo, pkg), f"{SUITE_DIR}/{pkg}")
    if native_so:
        entries.append((f"{SUITE_DIR}/native/{os.path.basename(native_so)}", 0o100755, _read(native_so)))
    for mod, path in site_dirs.items():
        if os.path.isdir(path):
            entries += _tree(path, f"{SUITE_DIR}/site/{mod}", keep_so=mod in WHEEL_MODULES)
        else:
            entries.append((f"{SUITE_DIR}/site/{os.path.basename(path)}", 0o100644, _read(path)))
    # a directory entry must come before what it holds, once
    seen, ordered = set(), []
    for e in entries:
        if e[0] in seen:
            continue
        seen.add(e[0])
        ordered.append(e)
    return ordered, {"python": python, "libraries": libs, "dynload_skipped": skipped,
                     "native": native_so or "pure-Python fallback"}


def build_suite_initrds(out_dir: str, busybox: str, roots: list[str], repo: str, site_dirs: dict[str, str],
                        native_so: str | None, kdump_image: str, tag: str) -> dict:
    """suite-kdump.cpio.gz (what the kdump kernel boots: Python, the suite, SUITE_INIT) and
    suite-production.cpio.gz (the same plus the kdump kernel and initrd under /boot, and /pattern)."""
    entries, meta = suite_entries(busybox, roots, repo, site_dirs, native_so)
    kd = os.path.join(out_dir, "suite-kdump.cpio.gz")
    _write_gz(kd, newc(entries))
    prod = entries + [("boot/kdump-image", 0o100644, _read(kdump_image)),
                      ("boot/kdump-initrd", 0o100644, _read(kd)),
                      ("pattern", 0o100644, b"".join(pattern_page(i, tag) for i in range(PATTERN_PAGES)))]
    pp = os.path.join(out_dir, "suite-production.cpio.gz")
    _write_gz(pp, newc(prod))
    return dict(meta, kdump_initrd=kd, production=pp, files=len(entries), pattern_pages=PATTERN_PAGES,
                pattern_tag=tag)


def unpack_newc(path: str, dest: str) -> None:
    """Unpack a gzip'd newc archive (what the functions above write) into dest, for running its
    s390x programs under qemu-user on the host."""
    data = gzip.decompress(_read(path))
    pos = 0
    while True:
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"{path}: no newc header at {pos}")
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return
        target = os.path.join(dest, name)
        kind = mode & 0o170000
        if kind == 0o040000:
            os.makedirs(target, exist_ok=True)
        elif kind == 0o120000:
            if not os.path.lexists(target):
                os.symlink(body.decode(), target)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(body)
            os.chmod(target, mode & 0o777)
