"""The guest's initramfs: busybox-static, the real /sbin/kexec with its shared libraries
(found through DT_NEEDED in the unpacked Debian packages) and one /init that is both the
production system's and the kdump kernel's.

The production /init writes unique marker lines into the kernel log (through /dev/kmsg),
prints /proc/iomem, the kernel release and a few symbols from /proc/kallsyms, loads the kdump
kernel with the real `kexec -p` when booted with crashkernel=, says READY and waits for
"panic" on the console.  Booted as the kdump kernel (/proc/vmcore exists) it copies
/proc/vmcore to the virtio disk /dev/vda.  Every console line meant for the harness starts
with "S390DT-".

The production initrd also holds /pattern: PATTERN_PAGES pages, page i being the line
"S390DT-PAGE <i> <tag>" repeated (compressible, so the gzip'd initrd in memory holds no
page-aligned copy).  Unpacked into the rootfs these pages stay where they are until the
crash, which makes them valid witnesses for comparing a pre-crash memory image with the
kdump kernel's /proc/vmcore.
"""

from __future__ import annotations

import gzip
import io
import os

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

PAGE = 4096
PATTERN_PAGES = 1024
MULTIARCH = "s390x-linux-gnu"

# What the production kernel's /init prints first, in every configuration (the suite's too): the
# marker lines in the kernel log and the facts the manifest records
PRODUCTION_FACTS = r"""echo "S390DT-BEGIN $TOKEN"
for i in 1 2 3; do
    echo "S390DT-MARKER-$i $TOKEN production kernel log line $i" > /dev/kmsg
done
echo "S390DT-RELEASE $(uname -r)"
echo "S390DT-CMDLINE $(cat /proc/cmdline)"
sed 's/^/S390DT-IOMEM /' /proc/iomem
grep -E ' (_stext|_etext|_sdata|_edata|_end)$' /proc/kallsyms | sed 's/^/S390DT-SYM /'
echo "S390DT-CRASHSIZE $(cat /sys/kernel/kexec_crash_size 2>/dev/null)"
echo "S390DT-NPROC $(grep -c ^processor /proc/cpuinfo) $(cat /sys/devices/system/cpu/online 2>/dev/null)"
"""

INIT = r"""#!/bin/sh
# s390-dumptools realworld guest init (PID 1), production and kdump kernel alike.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
TOKEN=none
for w in $(cat /proc/cmdline); do
    case "$w" in s390dt_token=*) TOKEN=${w#s390dt_token=} ;; esac
done
idle() { while true; do sleep 3600; done; }

if [ -e /proc/vmcore ]; then
    echo "S390DT-KDUMP-BEGIN $TOKEN size=$(stat -c %s /proc/vmcore) release=$(uname -r)"
    dd if=/proc/vmcore of=/dev/vda bs=1M 2>/tmp/dd.err
    rc=$?
    sync
    echo "S390DT-KDUMP-DONE $TOKEN rc=$rc $(tail -n 1 /tmp/dd.err)"
    idle
fi

""" + PRODUCTION_FACTS + r"""if grep -q crashkernel= /proc/cmdline && [ -e /boot/kdump-image ]; then
    kexec -p /boot/kdump-image --initrd=/boot/kdump-initrd \
        --command-line="console=ttysclp0 s390dt_token=$TOKEN"
    echo "S390DT-KEXEC rc=$? loaded=$(cat /sys/kernel/kexec_crash_loaded)"
fi
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


def pattern_page(i: int, tag: str) -> bytes:
    line = f"S390DT-PAGE {i:06d} {tag}\n".encode()
    return (line * (PAGE // len(line) + 1))[:PAGE]


def newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A 'newc' cpio archive of (name, mode, data); symlinks carry their target as data."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        nameb = name.encode() + b"\0"
        nlink = 2 if mode & 0o040000 else 1
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nameb), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.write(nameb + b"\0" * ((-(110 + len(nameb))) % 4))
        out.write(data + b"\0" * ((-len(data)) % 4))
    return out.getvalue()


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def needed_libraries(binary: str) -> tuple[str | None, list[str]]:
    """(PT_INTERP, DT_NEEDED names) of an ELF executable."""
    with open(binary, "rb") as fh:
        elf = ELFFile(fh)
        interp = None
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
        needed = []
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    return interp, needed


def _find_lib(name: str, roots: list[str]) -> str:
    for root in roots:
        for d in (f"lib/{MULTIARCH}", f"usr/lib/{MULTIARCH}", "lib", "usr/lib"):
            p = os.path.join(root, d, name)
            if os.path.exists(p):
                return os.path.realpath(p)
    raise FileNotFoundError(f"shared library {name} is in none of the unpacked packages "
                            f"({', '.join(os.path.basename(r) for r in roots)})")


def _dirs(*paths: str) -> list[tuple[str, int, bytes]]:
    seen, out = set(), []
    for p in paths:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                out.append((d, 0o040755, b""))
    return out


def base_entries(busybox: str) -> list[tuple[str, int, bytes]]:
    return _dirs("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "mnt", "boot", "lib") + [
        ("bin/busybox", 0o100755, _read(busybox)),
        ("bin/sh", 0o120777, b"busybox"),
        ("init", 0o100755, INIT.encode()),
    ]


def build_kdump_initrd(path: str, busybox: str) -> None:
    """What the kdump kernel boots: busybox and /init (no kexec needed there)."""
    _write_gz(path, newc(base_entries(busybox)))


def build_production_initrd(path: str, busybox: str, kexec: str, lib_roots: list[str], tag: str,
                            kdump_image: str | None = None, kdump_initrd: str | None = None) -> dict:
    """The production system's initrd; returns what it holds (for the manifest)."""
    entries = base_entries(busybox)
    interp, needed = needed_libraries(kexec)
    entries.append(("sbin/kexec", 0o100755, _read(kexec)))
    libs = {}
    entries += _dirs(f"lib/{MULTIARCH}")
    for name in needed:
        src = _find_lib(name, lib_roots)
        entries.append((f"lib/{MULTIARCH}/{name}", 0o100755, _read(src)))
        libs[name] = src
    if interp:
        src = _find_lib(os.path.basename(interp), lib_roots)
        target = interp.lstrip("/")
        entries += _dirs(os.path.dirname(target))
        entries.append((target, 0o100755, _read(src)))
        libs[interp] = src
    if kdump_image and kdump_initrd:
        entries.append(("boot/kdump-image", 0o100644, _read(kdump_image)))
        entries.append(("boot/kdump-initrd", 0o100644, _read(kdump_initrd)))
    entries.append(("pattern", 0o100644, b"".join(pattern_page(i, tag) for i in range(PATTERN_PAGES))))
    _write_gz(path, newc(entries))
    return {"kexec": kexec, "libraries": libs, "pattern_pages": PATTERN_PAGES, "pattern_tag": tag,
            "kdump_image": kdump_image, "kdump_initrd": kdump_initrd}


def _write_gz(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(gzip.compress(data, compresslevel=6, mtime=0))
    os.replace(tmp, path)
