#!/usr/bin/env bash
# The suite on real s390x Linux: real memory images and dumps from qemu-system-s390x (cached),
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
