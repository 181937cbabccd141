#!/usr/bin/env bash
# The suite on real s390x Linux: real memory images and dumps from qemu-system-s390x (cached),
# the suite itself running in the s390x guest (kexec_load, the crash, vmcore save of /proc/vmcore),
# then our chain on the real production kernel's memory.
set -euo pipefail
PY=${PY:-python3}
OUT=${DEMO_DIR:-out/demo-real}
rm -rf "$OUT" && mkdir -p "$OUT"
step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
run() { printf '\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "real s390x guests under QEMU (first run: ~13 min to build a kdump kernel and boot; then cached)"
run $PY -m tests.realworld.harness
RUN=$($PY -c "from tests.realworld import harness; print(harness.run_dir('kdump-1g'))")
KERNEL=$($PY -c "import json; print(json.load(open('$RUN/manifest.json'))['kernel_image'])")

step "QEMU's own dumps of the real kernel, read by vmcore (VMCOREINFO found through lowcore 0xE0C)"
run $PY -m vmcore.cli info "$RUN/qemu.elf"
run $PY -m vmcore.cli dmesg "$RUN/qemu.kdump" | tail -5
run $PY -m vmcore.cli regs "$RUN/qemu.elf" --cpu 0
step "the real kdump kernel's /proc/vmcore"
run $PY -m vmcore.cli info "$RUN/vmcore"

step "our chain on the real production kernel's memory"
run $PY -m s390_machine.cli import "$OUT/machine" --memory "$RUN/memory.raw" --cpus-from "$RUN/qemu.elf"
$PY -m tests.initrd initrd "$OUT/initrd.img" >/dev/null
run $PY -m kexec_s390.cli load -p "$KERNEL" --initrd "$OUT/initrd.img" --reuse-cmdline --machine "$OUT/machine"
run $PY -m zipl_sadump.cli build --device "$OUT/dasd.img" --type eckd --size 2G
run $PY -m zipl_sadump.cli ipl --device "$OUT/dasd.img" --machine "$OUT/machine"
run $PY -m vmcore.cli save --machine "$OUT/machine" -o "$OUT/vmcore.elf"
run $PY -m vmcore.cli info "$OUT/vmcore.elf"
run $PY -m vmcore.cli map "$OUT/vmcore.elf" --rows 6

step "the suite itself on real s390x (issue 21): in the guest, Debian's s390x Python runs our kexec-s390 and vmcore"
SUITE=$($PY -c "from tests.realworld import harness; print(harness.run_dir(harness.SUITE_CONFIG.name))")
printf '\033[1m$ grep ... %s/console.log\033[0m   (what the guest printed)\n' "$SUITE"
grep -E '^(S390DT-(PYTHON|FIRST-LOAD|UNLOAD|KEXEC|STATUS |PANIC|KDUMP-BEGIN|SAVED|KDUMP-DONE)|loaded into|│ [0-9] │|entry 0x|purgatory:|kdump (un)?loaded|saved [0-9]|│ kexec_crash_loaded .*= 1|\[ *[0-9.]+\] Linux version|warning: zlib)' \
    "$SUITE/console.log" | sed 's/\(Linux version [^ ]*\).*/\1 .../'
step "on the host: the dump our vmcore save wrote in the kdump kernel"
run $PY -m vmcore.cli verify "$SUITE/vmcore.d31"
run $PY -m vmcore.cli info "$SUITE/vmcore.d31"
run $PY -m vmcore.cli dmesg "$SUITE/vmcore.d31" | grep S390DT-MARKER
MAKEDUMPFILE=$($PY -c "from tests.realdata import s390x_peers; print(' '.join(s390x_peers()['MAKEDUMPFILE']))")
rm -f "$OUT/makedumpfile-dmesg.txt"
run $MAKEDUMPFILE --dump-dmesg "$SUITE/vmcore.d31" "$OUT/makedumpfile-dmesg.txt" >/dev/null
grep S390DT-MARKER "$OUT/makedumpfile-dmesg.txt"
