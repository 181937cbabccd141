"""Real s390x Linux in the loop: build (or fetch) real kernels, boot them under
qemu-system-s390x (TCG) and collect real artifacts for the `realworld` tests.

    python -m tests.realworld.harness [--force] [--only STEP] [--list]

Steps: host (the host tools), debs (Debian s390x packages), kernel (a small kdump-capable
kernel cross-built from linux-source-6.1, cached by the hash of its inputs), initramfs,
then one step per guest configuration (CONFIGS).  Each guest run collects, while the
production kernel is stopped at one instant: a `pmemsave` raw memory image (memory.raw),
QEMU `dump-guest-memory` ELF and kdump-zlib dumps (qemu.elf, qemu.kdump), `info registers -a`
(registers.txt); then it panics the guest and collects the kdump kernel's own /proc/vmcore
(vmcore, copied by the kdump kernel to a virtio disk) and a `pmemsave` of the kdump kernel's
memory (kdump-memory.raw: old [0, crashkernel size) sits at the crash base there), or,
without kdump, a QEMU ELF dump of the panicked guest (panic.elf; -action panic=pause).
What the guest's /init printed (release, /proc/iomem, symbols, the marker lines) and the
parsed registers go to manifest.json.

Then the suite itself on s390x (issue 21): suite-debs (Debian's s390x Python 3.11, its libraries,
the headers to cross-build native/), suite-initramfs (Python, the suite, its dependencies), and
the run suite-on-s390x: in the guest our `kexec-s390 load -p` / `unload -p` / `status` through
the real kexec_load(2), the same snapshots as above, the crash, and in our loaded kdump kernel
our `vmcore save -d 31 -c` of the real /proc/vmcore, copied to the virtio disk (vmcore.d31);
then the guest powers off.

Everything is cached under $S390_DUMPTOOLS_CACHE/realworld (default
~/.cache/s390-dumptools/realworld), never in the repository; a step whose inputs did not
change is not redone.  One line per step; on failure one line naming the step, exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

from tests.realworld import initramfs, suite_initramfs
from tests.realworld.qemu import QEMU, Guest, GuestError, parse_info_registers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FRAGMENT = os.path.join(HERE, "kdump-kernel.config")
BASE = os.environ.get("S390_DUMPTOOLS_CACHE", os.path.expanduser("~/.cache/s390-dumptools"))
CACHE = os.path.join(BASE, "realworld")
LINUX_SOURCE = "/usr/src/linux-source-6.1.tar.xz"
CROSS = "s390x-linux-gnu-"
FORMAT_VERSION = "1"        # bump to invalidate every cached run

# host command -> Debian package providing it
HOST_TOOLS = {
    QEMU: "qemu-system-misc",
    f"{CROSS}gcc": "gcc-s390x-linux-gnu",
    "gcc": "gcc",
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "fallocate": "util-linux",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
}
HOST_FILES = {LINUX_SOURCE: "linux-source-6.1"}

STOCK_KERNEL_PACKAGE = "linux-image-6.1.0-[0-9]+-s390x"
S390X_PACKAGES = ["busybox-static", "kexec-tools", "libc6", "s390-tools", STOCK_KERNEL_PACKAGE]


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    kernel: str                 # "built" (kdump capable), "stock" (Debian's 6.1) or "debian612" (BTF)
    memory_mb: int
    cpus: int
    crashkernel: str | None     # crashkernel= value; None: no kdump
    suite: bool = False         # the suite itself in the guest (its kexec-s390 and vmcore save)

    @property
    def kdump(self) -> bool:
        return self.crashkernel is not None


CONFIGS = (
    Config("kdump-1g", "built", 1024, 2, "256M"),
    Config("kdump-768m", "built", 768, 3, "192M"),
    Config("stock-1g", "stock", 1024, 2, None),
)
SUITE_CONFIG = Config("suite-on-s390x", "built", 1024, 2, "256M", suite=True)

# the s390x Python the suite runs on in the guest (bookworm), its libraries, and what cross-building
# native/ against it takes (Python's headers, the C library's)
SUITE_PACKAGES = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "zlib1g", "libffi8",
                  "libexpat1", "libssl3", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1", "libtinfo6",
                  "libncursesw6", "libreadline8", "libsqlite3-0", "libnsl2", "libtirpc3", "libdb5.3",
                  "libgssapi-krb5-2", "libgcc-s1"]
SUITE_BUILD_PACKAGES = ["libpython3.11-dev", "libc6-dev", "linux-libc-dev", "libcrypt-dev"]

# A kernel that carries BTF (CONFIG_DEBUG_INFO_BTF=y, CONFIG_KALLSYMS_ALL=y, KASLR): Debian's 6.12 from
# bookworm-backports, fetched with apt through a package list of its own under the cache (the host's
# apt sources stay as they are).  Its run is not in CONFIGS: the tests that walk every run assume the
# 6.1 kernels' identity-mapped image; tests/realworld/test_btf.py takes it from EXTRA_CONFIGS.
BACKPORTS_SOURCE = ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                    "http://deb.debian.org/debian bookworm-backports main")
DEBIAN612_PACKAGE = r"linux-image-6\.12\.[0-9]+\+deb12-s390x"
EXTRA_CONFIGS = (
    Config("debian612-1g", "debian612", 1024, 2, None),
)

BOOT_TIMEOUT = 240
DUMP_TIMEOUT = 300
KDUMP_TIMEOUT = 420
PANIC_TIMEOUT = 120
BUILD_TIMEOUT = 1800


class StepError(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step


def say(msg: str) -> None:
    print(msg, flush=True)


def sha256_of(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(step: str, argv: list[str], timeout: float, log: str | None = None, **kw) -> subprocess.CompletedProcess:
    try:
        if log:
            with open(log, "ab") as fh:
                proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, **kw)
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise StepError(step, f"`{' '.join(argv[:3])} ...` took more than {timeout:.0f} s") from None
    except FileNotFoundError:
        raise StepError(step, f"{argv[0]} is not installed") from None
    if proc.returncode != 0:
        detail = f"see {log}" if log else (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ""
        raise StepError(step, f"`{' '.join(argv[:4])}` failed ({proc.returncode}): {detail}")
    return proc


def dpkg_version(package: str) -> str:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


# --------------------------------------------------------------------------- steps

def step_host(force: bool) -> dict:
    """The host tools; installed with apt-get when missing and we are root, else a clear failure."""
    missing = sorted({pkg for cmd, pkg in HOST_TOOLS.items() if shutil.which(cmd) is None}
                     | {pkg for path, pkg in HOST_FILES.items() if not os.path.exists(path)})
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise StepError("host", f"missing Debian package(s) {' '.join(missing)}: "
                                    f"apt-get install {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run("host", ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], 900, env=env)
        still = [pkg for cmd, pkg in HOST_TOOLS.items() if shutil.which(cmd) is None]
        if still:
            raise StepError("host", f"apt-get install did not provide {' '.join(still)}")
    qv = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"qemu": qv, "installed": missing, "linux_source": dpkg_version("linux-source-6.1"),
            "cross_gcc": subprocess.run([f"{CROSS}gcc", "-dumpfullversion"], capture_output=True,
                                        text=True).stdout.strip()}


def step_debs(force: bool) -> dict:
    """The s390x packages, fetched and unpacked by scripts/fetch-s390x-debs.sh.  Once they are
    there, asking apt again is left to --force (apt-cache alone takes ~10 s)."""
    meta_path = os.path.join(CACHE, "debs.json")
    if os.path.exists(meta_path) and not force:
        with open(meta_path) as fh:
            old = json.load(fh)
        if old.get("packages") == S390X_PACKAGES and all(
                os.path.exists(os.path.join(r, ".unpacked")) for r in old["roots"].values()):
            return dict(old, cached=True)
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-s390x-debs.sh"), *S390X_PACKAGES],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise StepError("debs", (proc.stderr.strip().splitlines() or ["fetch-s390x-debs.sh failed"])[-1])
    roots = proc.stdout.split()
    if len(roots) != len(S390X_PACKAGES):
        raise StepError("debs", f"fetch-s390x-debs.sh printed {len(roots)} directories for "
                                f"{len(S390X_PACKAGES)} packages")
    d = dict(zip(S390X_PACKAGES, roots))
    stock = glob.glob(os.path.join(d[STOCK_KERNEL_PACKAGE], "boot", "vmlinuz-*"))
    if not stock:
        raise StepError("debs", f"no boot/vmlinuz-* in {d[STOCK_KERNEL_PACKAGE]}")
    busybox = os.path.join(d["busybox-static"], "bin", "busybox")
    kexec = os.path.join(d["kexec-tools"], "sbin", "kexec")
    for p in (busybox, kexec):
        if not os.path.isfile(p):
            raise StepError("debs", f"{p} is missing from its package")
    meta = {"packages": S390X_PACKAGES, "roots": d, "stock_kernel": stock[0],
            "stock_release": os.path.basename(stock[0])[len("vmlinuz-"):], "busybox": busybox, "kexec": kexec,
            "zgetdump": os.path.join(d["s390-tools"], "sbin", "zgetdump")}
    with open(meta_path + ".tmp", "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return dict(meta, cached=False)


def step_debian612(force: bool) -> dict:
    """Debian's 6.12 s390x kernel image (bookworm-backports), unpacked under the cache."""
    meta_path = os.path.join(CACHE, "debian612.json")
    if os.path.exists(meta_path) and not force:
        with open(meta_path) as fh:
            old = json.load(fh)
        if os.path.isfile(old.get("image", "")):
            return dict(old, cached=True)
    apt = os.path.join(BASE, "apt-backports")
    for d in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, d), exist_ok=True)
    with open(os.path.join(apt, "sources.list"), "w") as fh:
        fh.write(BACKPORTS_SOURCE + "\n")
    opts = ["-q", "-o", f"Dir::Etc::SourceList={apt}/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}/cache"]
    if not glob.glob(os.path.join(apt, "lists", "*s390x_Packages*")) or force:
        run("debian612", ["apt-get", *opts, "update"], 600)
    names = run("debian612", ["apt-cache", *opts, "search", "--names-only", f"^{DEBIAN612_PACKAGE}$"], 120).stdout
    found = sorted((line.split()[0] for line in names.splitlines() if line.strip()),
                   key=lambda n: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", n)])
    if not found:
        raise StepError("debian612", f"no package matching {DEBIAN612_PACKAGE} in bookworm-backports")
    name = found[-1]
    debs = os.path.join(apt, "debs")
    os.makedirs(debs, exist_ok=True)
    if not glob.glob(os.path.join(debs, f"{name}_*_s390x.deb")):
        run("debian612", ["apt-get", *opts, "download", f"{name}:s390x"], 900, cwd=debs)
    deb = sorted(glob.glob(os.path.join(debs, f"{name}_*_s390x.deb")))[-1]
    root = os.path.join(BASE, "root", os.path.basename(deb)[:-4])
    if not os.path.exists(os.path.join(root, ".unpacked")):
        shutil.rmtree(root, ignore_errors=True)
        run("debian612", ["dpkg-deb", "-x", deb, root], 300)
        open(os.path.join(root, ".unpacked"), "w").close()
    images = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
    if not images:
        raise StepError("debian612", f"no boot/vmlinuz-* in {deb}")
    meta = {"package": name, "deb": deb, "image": images[0], "release": os.path.basename(images[0])[8:],
            "config": images[0].replace("vmlinuz-", "config-"), "system_map": images[0].replace("vmlinuz-", "System.map-")}
    with open(meta_path + ".tmp", "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return dict(meta, cached=False)


def fragment_lines() -> list[str]:
    with open(FRAGMENT) as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]


def step_kernel(force: bool, host: dict) -> dict:
    with open(FRAGMENT, "rb") as fh:
        frag = fh.read()
    key = sha256_of(frag, host["linux_source"], host["cross_gcc"], "kernel-v1")[:16]
    out = os.path.join(CACHE, "kernel", key)
    meta_path = os.path.join(out, "kernel.json")
    if os.path.exists(meta_path) and not force:
        with open(meta_path) as fh:
            return dict(json.load(fh), cached=True)
    if not os.path.exists(LINUX_SOURCE):
        raise StepError("kernel", f"{LINUX_SOURCE} is missing: apt-get install linux-source-6.1")
    work = os.path.join(CACHE, "kernel", f"{key}.build")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = os.path.join(CACHE, "kernel", f"{key}.log")
    if os.path.exists(log):
        os.unlink(log)
    src, obj = os.path.join(work, "src"), os.path.join(work, "obj")
    os.makedirs(src)
    t0 = time.monotonic()
    run("kernel", ["tar", "xf", LINUX_SOURCE, "--strip-components=1", "-C", src], 600, log=log)
    make = ["make", "-C", src, f"O={obj}", "ARCH=s390", f"CROSS_COMPILE={CROSS}"]
    run("kernel", make + ["tinyconfig"], 300, log=log)
    lines = fragment_lines()
    with open(os.path.join(obj, ".config"), "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    run("kernel", make + ["olddefconfig"], 300, log=log)
    with open(os.path.join(obj, ".config")) as fh:
        final = fh.read()
    dropped = []
    for ln in lines:
        name, want = ln.split("=", 1)
        if want == "n":
            if re.search(rf"^{name}=", final, re.M):
                dropped.append(ln)
        elif not re.search(rf"^{re.escape(ln)}$", final, re.M):
            dropped.append(ln)
    if dropped:
        raise StepError("kernel", f"olddefconfig dropped {' '.join(dropped)} (a dependency is missing from "
                                  f"{os.path.basename(FRAGMENT)})")
    jobs = str((os.cpu_count() or 1) + 1)
    run("kernel", make + [f"-j{jobs}", "bzImage"], BUILD_TIMEOUT, log=log)
    release = run("kernel", make + ["-s", "kernelrelease"], 60).stdout.strip().splitlines()[-1]
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shutil.copy(os.path.join(obj, "arch", "s390", "boot", "bzImage"), os.path.join(tmp, "image"))
    shutil.copy(os.path.join(obj, "System.map"), os.path.join(tmp, "System.map"))
    shutil.copy(os.path.join(obj, ".config"), os.path.join(tmp, "config"))
    meta = {"key": key, "release": release, "build_seconds": round(time.monotonic() - t0, 1),
            "image": os.path.join(out, "image"), "system_map": os.path.join(out, "System.map")}
    with open(os.path.join(tmp, "kernel.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    os.replace(log, os.path.join(out, "build.log"))
    return dict(meta, cached=False)


def step_initramfs(force: bool, debs: dict, kernel: dict) -> dict:
    with open(initramfs.__file__, "rb") as fh:
        src = fh.read()
    key = sha256_of(src, *(os.path.basename(r) for r in debs["roots"].values()), file_digest(kernel["image"]),
                    "initramfs-v1")[:16]
    out = os.path.join(CACHE, "initramfs", key)
    meta_path = os.path.join(out, "initramfs.json")
    if os.path.exists(meta_path) and not force:
        with open(meta_path) as fh:
            return dict(json.load(fh), cached=True)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    kd = os.path.join(tmp, "kdump.cpio.gz")
    initramfs.build_kdump_initrd(kd, debs["busybox"])
    try:
        contents = initramfs.build_production_initrd(
            os.path.join(tmp, "production.cpio.gz"), debs["busybox"], debs["kexec"],
            [debs["roots"]["libc6"], debs["roots"]["kexec-tools"]], tag=key,
            kdump_image=kernel["image"], kdump_initrd=kd)
    except (FileNotFoundError, OSError) as exc:
        raise StepError("initramfs", str(exc)) from None
    meta = dict(contents, key=key, kdump_initrd=os.path.join(out, "kdump.cpio.gz"),
                production=os.path.join(out, "production.cpio.gz"),
                kdump_image=kernel["image"])
    with open(os.path.join(tmp, "initramfs.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return dict(meta, cached=False)


def step_suite_debs(force: bool) -> dict:
    """The s390x Python and what it needs, and the headers for cross-building native/."""
    meta_path = os.path.join(CACHE, "suite-debs.json")
    wanted = SUITE_PACKAGES + SUITE_BUILD_PACKAGES
    if os.path.exists(meta_path) and not force:
        with open(meta_path) as fh:
            old = json.load(fh)
        if old.get("packages") == wanted and all(os.path.exists(os.path.join(r, ".unpacked"))
                                                 for r in old["roots"].values()):
            return dict(old, cached=True)
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-s390x-debs.sh"), *wanted],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise StepError("suite-debs", (proc.stderr.strip().splitlines() or ["fetch-s390x-debs.sh failed"])[-1])
    roots = proc.stdout.split()
    if len(roots) != len(wanted):
        raise StepError("suite-debs", f"fetch-s390x-debs.sh printed {len(roots)} directories for {len(wanted)} packages")
    meta = {"packages": wanted, "roots": dict(zip(wanted, roots))}
    with open(meta_path + ".tmp", "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return dict(meta, cached=False)


def cross_build_native(out: str, suite_debs: dict, libc_root: str) -> str:
    """native/_native.c built for s390x against Debian's Python 3.11 headers (as setup.py builds
    it: -O3 -std=c11); unresolved C library symbols come from the Python process that loads it."""
    inc = os.path.join(out, "include")
    for pkg in ("libpython3.11-dev", "libc6-dev", "linux-libc-dev", "libcrypt-dev"):
        shutil.copytree(os.path.join(suite_debs["roots"][pkg], "usr", "include"), inc, dirs_exist_ok=True,
                        symlinks=True)
    so = os.path.join(out, "_native.cpython-311-s390x-linux-gnu.so")
    gcc_inc = run("suite-initramfs", [f"{CROSS}gcc", "-print-file-name=include"], 30).stdout.strip()
    run("suite-initramfs", [f"{CROSS}gcc", "-O3", "-std=c11", "-Wall", "-Wextra", "-shared", "-fPIC", "-nostdinc",
                            "-nostdlib", "-isystem", gcc_inc, "-isystem", os.path.join(inc, "s390x-linux-gnu"),
                            "-isystem", inc, "-I", os.path.join(inc, "python3.11"),
                            os.path.join(ROOT, "native", "_native.c"), "-o", so], 300)
    return so


def s390x_wheels() -> dict[str, str]:
    """The compiled dependencies as PyPI's manylinux s390x wheels (the host's versions), unpacked
    into the cache: module -> directory."""
    import importlib.metadata
    import zipfile
    out = {}
    for mod in suite_initramfs.WHEEL_MODULES:
        dist = mod.replace("_", "-")
        version = importlib.metadata.version(dist)
        wheels = os.path.join(CACHE, "wheels")
        unpacked = os.path.join(wheels, f"{mod}-{version}-s390x")
        if not os.path.isdir(os.path.join(unpacked, mod)):
            os.makedirs(wheels, exist_ok=True)
            run("suite-initramfs", [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                    "--python-version", "3.11", "--platform", "manylinux2014_s390x",
                                    "--platform", "manylinux_2_17_s390x", "-d", wheels, f"{dist}=={version}"], 300)
            found = glob.glob(os.path.join(wheels, f"{mod}-{version}-*s390x*.whl"))
            if not found:
                raise StepError("suite-initramfs", f"pip downloaded no s390x wheel of {dist} {version}")
            shutil.rmtree(unpacked + ".tmp", ignore_errors=True)
            with zipfile.ZipFile(found[0]) as z:
                z.extractall(unpacked + ".tmp")
            shutil.rmtree(unpacked, ignore_errors=True)
            os.replace(unpacked + ".tmp", unpacked)
        out[mod] = os.path.join(unpacked, mod)
    return out


def site_dirs() -> dict[str, str]:
    """Where the host's copies of the suite's pure-Python dependencies are (a package directory
    or a module file), and the s390x wheels of the compiled ones."""
    import importlib.util
    out = s390x_wheels()
    for mod in suite_initramfs.SITE_MODULES:
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            raise StepError("suite-initramfs", f"{mod} is not installed on the host (pip install the suite's "
                                               f"dependencies)")
        out[mod] = os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin
    return out


def _suite_sources_digest() -> str:
    h = hashlib.sha256()
    for pkg in suite_initramfs.SUITE_PACKAGES:
        for dirpath, dirnames, filenames in sorted(os.walk(os.path.join(ROOT, pkg))):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith((".py", ".c", ".S")):
                    h.update(fn.encode())
                    h.update(open(os.path.join(dirpath, fn), "rb").read())
    return h.hexdigest()


def step_suite_initramfs(force: bool, debs: dict, suite_debs: dict, kernel: dict) -> dict:
    src = b"".join(open(m.__file__, "rb").read() for m in (initramfs, suite_initramfs))
    sites = site_dirs()
    key = sha256_of(src, _suite_sources_digest(), *sorted(os.path.basename(r) for r in suite_debs["roots"].values()),
                    os.path.basename(debs["roots"]["libc6"]), file_digest(kernel["image"]),
                    json.dumps(sorted(sites.items())), "suite-initramfs-v1")[:16]
    out = os.path.join(CACHE, "suite-initramfs", key)
    meta_path = os.path.join(out, "initramfs.json")
    if os.path.exists(meta_path) and not force:
        with open(meta_path) as fh:
            return dict(json.load(fh), cached=True)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    native_so = None
    try:
        native_so = cross_build_native(tmp, suite_debs, debs["roots"]["libc6"])
    except StepError as exc:
        say(f"realworld: suite-initramfs: native/ not cross-built ({exc}); the guest uses the pure-Python fallback")
    roots = [*(suite_debs["roots"][p] for p in SUITE_PACKAGES), debs["roots"]["libc6"]]
    try:
        meta = suite_initramfs.build_suite_initrds(tmp, debs["busybox"], roots, ROOT, sites, native_so,
                                             kernel["image"], tag=key)
    except (FileNotFoundError, OSError) as exc:
        raise StepError("suite-initramfs", str(exc)) from None
    shutil.rmtree(os.path.join(tmp, "include"), ignore_errors=True)
    meta = dict(meta, key=key, kdump_image=kernel["image"])
    for k in ("kdump_initrd", "production", "native"):
        if isinstance(meta.get(k), str) and meta[k].startswith(tmp):
            meta[k] = out + meta[k][len(tmp):]
    with open(os.path.join(tmp, "initramfs.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return dict(meta, cached=False)


def run_dir(name: str) -> str:
    return os.path.join(CACHE, "runs", name)


def parse_console(text: str) -> dict:
    """The facts the guest's /init printed (lines starting with S390DT-)."""
    facts: dict = {"iomem": [], "symbols": {}}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"S390DT-(\w[\w-]*) ?(.*)$", line)
        if not m:
            continue
        key, rest = m.group(1), m.group(2)
        if key == "IOMEM":
            facts["iomem"].append(rest)
        elif key == "SYM":
            parts = rest.split()
            if len(parts) >= 3:
                facts["symbols"][parts[2]] = int(parts[0], 16)
        elif key in ("RELEASE", "CMDLINE", "CRASHSIZE", "NPROC", "KEXEC", "BEGIN", "READY",
                     "KDUMP-BEGIN", "KDUMP-DONE"):
            facts.setdefault(key.lower().replace("-", "_"), rest)
    crash = [ln for ln in facts["iomem"] if ln.strip().endswith(": Crash kernel")]
    if crash:
        lo, hi = crash[0].strip().split(" : ")[0].split("-")
        facts["crash_kernel"] = {"start": int(lo, 16), "end": int(hi, 16), "line": crash[0].strip()}
    return facts


def dig_holes(step: str, *paths: str) -> None:
    for p in paths:
        if os.path.exists(p):
            run(step, ["fallocate", "--dig-holes", p], 300)


def step_run(force: bool, cfg: Config, host: dict, debs: dict, kernel: dict, initrd: dict) -> dict:
    step = cfg.name
    image = kernel["image"] if cfg.kernel == "built" else debs[f"{cfg.kernel}_kernel"]
    fields = dataclasses.asdict(cfg)
    if not cfg.suite:
        del fields["suite"]         # the key of the runs before the suite run existed stays the same
    key = sha256_of(json.dumps(fields, sort_keys=True), file_digest(image),
                    file_digest(initrd["production"]), host["qemu"], FORMAT_VERSION)[:16]
    out = run_dir(cfg.name)
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path) and not force:
        with open(manifest_path) as fh:
            old = json.load(fh)
        if old.get("key") == key:
            return dict(old, cached=True)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    token = secrets.token_hex(6)
    size = cfg.memory_mb << 20
    append = f"console=ttysclp0 s390dt_token={token}"
    if cfg.crashkernel:
        append += f" crashkernel={cfg.crashkernel}"
    disk = None
    if cfg.kdump:
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as fh:
            fh.truncate(size + (64 << 20))
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - t0, 1)

    files = {}
    try:
        with Guest(tmp, kernel=image, initrd=initrd["production"], append=append, memory_mb=cfg.memory_mb,
                   cpus=cfg.cpus, disk=disk) as g:
            g.start()
            g.wait_for(rf"^S390DT-READY {token}", BOOT_TIMEOUT * (3 if cfg.suite else 1),
                       what="the guest's READY line", fail_on_panic=True)
            mark("ready")
            facts = parse_console(g.console.text)
            if cfg.kdump:
                m = re.search(r"rc=(\d+) loaded=(\d)", facts.get("kexec", ""))
                if not m or m.group(1) != "0" or m.group(2) != "1":
                    raise StepError(step, f"{'kexec-s390 load' if cfg.suite else 'kexec'} -p in the guest failed: S390DT-KEXEC {facts.get('kexec')!r}; "
                                          f"console tail: {g.console.tail(4)}")
                if "crash_kernel" not in facts:
                    raise StepError(step, "the guest's /proc/iomem has no 'Crash kernel' line")
            # one instant: the production kernel stopped for every snapshot
            g.qmp.execute("stop")
            g.qmp.execute("pmemsave", timeout=DUMP_TIMEOUT, val=0, size=size,
                          filename=os.path.join(tmp, "memory.raw"))
            g.qmp.execute("dump-guest-memory", timeout=DUMP_TIMEOUT, paging=False,
                          protocol="file:" + os.path.join(tmp, "qemu.elf"))
            g.qmp.execute("dump-guest-memory", timeout=DUMP_TIMEOUT, paging=False, format="kdump-zlib",
                          protocol="file:" + os.path.join(tmp, "qemu.kdump"))
            regs_text = g.qmp.hmp("info registers -a")
            cpus = g.qmp.execute("query-cpus-fast")
            with open(os.path.join(tmp, "registers.txt"), "w") as fh:
                fh.write(regs_text)
            mark("snapshots")
            g.qmp.execute("cont")
            start = len(g.console.text)
            g.console.send("panic")
            g.wait_for(rf"^S390DT-PANIC {token}", 60, what="the guest's PANIC line", start=start)
            if cfg.kdump:
                done = g.wait_for(rf"^S390DT-KDUMP-DONE {token} rc=(\d+)(.*)$", KDUMP_TIMEOUT * (2 if cfg.suite else 1),
                                  what="the kdump kernel's KDUMP-DONE line", start=start,
                                  fail_on_panic=True)
                mark("kdump_done")
                begin = re.search(rf"^S390DT-KDUMP-BEGIN {token} size=(\d+) release=(\S+)", g.console.text, re.M)
                if done.group(1) != "0" or not begin:
                    what = "vmcore save" if cfg.suite else "copying /proc/vmcore"
                    raise StepError(step, f"{what} in the kdump kernel failed: {done.group(0)!r}; "
                                          f"console tail: {g.console.tail(6)}")
                vmcore_size = int(begin.group(1))
                kdump_release = begin.group(2)
                if cfg.suite:
                    # the kdump kernel saved the dump with our vmcore save, copied it to the disk and
                    # powers the machine off
                    saved_size = int(re.search(r"size=(\d+)", done.group(2)).group(1))
                    try:
                        g.proc.wait(60)
                    except subprocess.TimeoutExpired:
                        raise StepError(step, "the kdump kernel did not power off") from None
                    mark("powered_off")
                else:
                    # the kdump kernel's physical memory: old [0, crash size) now sits at the crash base
                    g.qmp.execute("stop")
                    g.qmp.execute("pmemsave", timeout=DUMP_TIMEOUT, val=0, size=size,
                                  filename=os.path.join(tmp, "kdump-memory.raw"))
                    mark("kdump_snapshot")
            else:
                g.qmp.wait_event("GUEST_PANICKED", PANIC_TIMEOUT)
                mark("panicked")
                g.qmp.execute("dump-guest-memory", timeout=DUMP_TIMEOUT, paging=False,
                              protocol="file:" + os.path.join(tmp, "panic.elf"))
                with open(os.path.join(tmp, "panic-registers.txt"), "w") as fh:
                    fh.write(g.qmp.hmp("info registers -a"))
            g.quit()
            console_text = g.console.text
    except GuestError as exc:
        raise StepError(step, f"QEMU: {exc}") from None
    files.update(memory="memory.raw", qemu_elf="qemu.elf", qemu_kdump="qemu.kdump", registers="registers.txt",
                 console="console.log")
    if cfg.suite:
        saved = f"vmcore.d{suite_initramfs.DUMP_LEVEL}"
        with open(disk, "r+b") as fh:
            fh.truncate(saved_size)
        os.replace(disk, os.path.join(tmp, saved))
        files.update(saved=saved)
    elif cfg.kdump:
        with open(disk, "r+b") as fh:
            fh.truncate(vmcore_size)
        os.replace(disk, os.path.join(tmp, "vmcore"))
        files.update(vmcore="vmcore", kdump_memory="kdump-memory.raw")
    else:
        files.update(panic_elf="panic.elf", panic_registers="panic-registers.txt")
    for name in os.listdir(tmp):
        os.chmod(os.path.join(tmp, name), 0o644)      # QEMU writes its dumps 0400
    dig_holes(step, *(os.path.join(tmp, f) for f in ("memory.raw", "qemu.elf", "vmcore", "panic.elf",
                                                          "kdump-memory.raw")))
    mark("total")
    for name in files.values():
        if not os.path.isfile(os.path.join(tmp, name)):
            raise StepError(step, f"{name} was not written")
    if os.path.getsize(os.path.join(tmp, "memory.raw")) != size:
        raise StepError(step, f"pmemsave wrote {os.path.getsize(os.path.join(tmp, 'memory.raw'))} bytes, not {size}")
    facts = parse_console(console_text)
    manifest = {
        "key": key, "config": dataclasses.asdict(cfg), "token": token, "append": append,
        "memory_size": size, "kernel_image": image,
        "release": facts.get("release"), "kdump_release": kdump_release if cfg.kdump else None,
        "iomem": facts["iomem"], "crash_kernel": facts.get("crash_kernel"), "symbols": facts["symbols"],
        "kexec": facts.get("kexec"), "nproc": facts.get("nproc"),
        "markers": [f"S390DT-MARKER-{i} {token} production kernel log line {i}" for i in (1, 2, 3)]
                   + [f"S390DT-MARKER-READY {token} pattern pages resident"],
        "panic_marker": f"S390DT-MARKER-PANIC {token} about to panic",
        "pattern": {"pages": initrd["pattern_pages"], "tag": initrd["pattern_tag"]},
        "registers": parse_info_registers(regs_text), "query_cpus": cpus,
        "files": files, "timings": timings, "qemu": host["qemu"],
    }
    if not cfg.kdump:
        with open(os.path.join(tmp, "panic-registers.txt")) as fh:
            manifest["panic_registers"] = parse_info_registers(fh.read())
    if cfg.suite:
        manifest["suite"] = {"vmcore_size": vmcore_size, "saved_size": saved_size,
                             "dump_level": suite_initramfs.DUMP_LEVEL, "native": initrd.get("native"),
                             "lines": [ln for ln in console_text.splitlines() if ln.startswith("S390DT-")
                                       and not ln.startswith(("S390DT-IOMEM", "S390DT-SYM"))]}
    with open(os.path.join(tmp, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return dict(manifest, cached=False)


# --------------------------------------------------------------------------- driver

STEPS = ["host", "debs", "kernel", "initramfs", *(c.name for c in CONFIGS), "debian612",
         *(c.name for c in EXTRA_CONFIGS), "suite-debs", "suite-initramfs", SUITE_CONFIG.name]
CURRENT_STEP = "start"


def build_all(force: bool = False, only: str | None = None) -> dict:
    """Run the steps (only `only` and what it needs when given); returns every result."""
    if only is not None and only not in STEPS:
        raise StepError("args", f"unknown step {only!r} (steps: {', '.join(STEPS)})")
    wanted = STEPS if only is None else STEPS[:STEPS.index(only) + 1]
    if only in [c.name for c in CONFIGS]:
        wanted = ["host", "debs", "kernel", "initramfs", only]
    if only in [c.name for c in EXTRA_CONFIGS]:
        wanted = ["host", "debs", "kernel", "initramfs", "debian612", only]
    if only in ("suite-debs", "suite-initramfs", SUITE_CONFIG.name):
        wanted = ["host", "debs", "kernel", "suite-debs", "suite-initramfs", SUITE_CONFIG.name]
        wanted = wanted[:wanted.index(only) + 1]
    results: dict = {}

    def do(name: str, fn, *args):
        global CURRENT_STEP
        CURRENT_STEP = name
        t = time.monotonic()
        f = force and (only is None or only == name)
        try:
            res = fn(f, *args)
        except StepError:
            raise
        except OSError as exc:
            raise StepError(name, f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}") from None
        dt = time.monotonic() - t
        results[name] = res
        say(f"realworld: {name:<11} {'cached' if res.get('cached') else 'done'} in {dt:6.1f} s  {summary(name, res)}")
        return res

    os.makedirs(CACHE, exist_ok=True)
    host = do("host", step_host)
    if "debs" in wanted:
        debs = do("debs", step_debs)
    if "kernel" in wanted:
        kernel = do("kernel", step_kernel, host)
    if "initramfs" in wanted:
        initrd = do("initramfs", step_initramfs, debs, kernel)
    for cfg in CONFIGS:
        if cfg.name in wanted:
            do(cfg.name, step_run, cfg, host, debs, kernel, initrd)
    if "debian612" in wanted:
        d612 = do("debian612", step_debian612)
        for cfg in EXTRA_CONFIGS:
            if cfg.name in wanted:
                do(cfg.name, step_run, cfg, host, dict(debs, debian612_kernel=d612["image"]), kernel, initrd)
    if "suite-debs" in wanted:
        suite_debs = do("suite-debs", step_suite_debs)
    if "suite-initramfs" in wanted:
        suite_initrd = do("suite-initramfs", step_suite_initramfs, debs, suite_debs, kernel)
    if SUITE_CONFIG.name in wanted:
        do(SUITE_CONFIG.name, step_run, SUITE_CONFIG, host, debs, kernel, suite_initrd)
    return results


def summary(name: str, res: dict) -> str:
    if name == "host":
        return res["qemu"]
    if name == "debs":
        return f"{len(res['roots'])} packages, stock kernel {res['stock_release']}"
    if name == "kernel":
        return f"{res['release']} -> {os.path.dirname(res['image'])}"
    if name == "debian612":
        return f"{res['package']} -> {res['image']}"
    if name == "suite-debs":
        return f"{len(res['roots'])} packages (python3.11 {os.path.basename(res['roots']['python3.11-minimal'])})"
    if name == "suite-initramfs":
        return f"{os.path.getsize(res['production']) >> 10} KiB production, " \
               f"{os.path.getsize(res['kdump_initrd']) >> 10} KiB kdump initrd, native: {res['native']}"
    if name == "initramfs":
        return f"{os.path.getsize(res['production']) >> 10} KiB production, " \
               f"{os.path.getsize(res['kdump_initrd']) >> 10} KiB kdump initrd"
    c = res["config"]
    extra = f"crashkernel {c['crashkernel']} at {res['crash_kernel']['line'].split(' : ')[0]}" \
        if res.get("crash_kernel") else "no crashkernel"
    return f"{res['release']} {c['memory_mb']}M/{c['cpus']} CPUs, {extra} -> {run_dir(name)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.realworld.harness", description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="redo the steps even when cached (with --only: that step)")
    ap.add_argument("--only", metavar="STEP", help=f"run only STEP and what it needs ({', '.join(STEPS)})")
    ap.add_argument("--list", action="store_true", help="list the steps and the cache directory")
    args = ap.parse_args(argv)
    if args.list:
        say(f"cache: {CACHE}")
        for s in STEPS:
            say(s)
        return 0

    def on_signal(signum, frame):
        # unwinds the step (its `with Guest` kills QEMU) and ends in the FAILED line below
        raise StepError(CURRENT_STEP, f"terminated by {signal.Signals(signum).name}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t0 = time.monotonic()
    try:
        build_all(force=args.force, only=args.only)
    except StepError as exc:
        say(f"realworld: FAILED at step {exc.step}: {exc}")
        return 1
    except KeyboardInterrupt:
        say(f"realworld: FAILED at step {CURRENT_STEP}: interrupted")
        return 130
    say(f"realworld: all steps ok in {time.monotonic() - t0:.1f} s; artifacts in {CACHE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
