#!/usr/bin/env bash
# The main job on a simulated s390x machine: a production system with crashkernel memory,
# kdump loaded the s390 way, a crash, the kdump kernel saving the dump, inspection.
set -euo pipefail
PY=${PY:-python3}
OUT=${DEMO_DIR:-out/demo}
rm -rf "$OUT" && mkdir -p "$OUT"
step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
run() { printf '\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "a real Debian s390x kernel for the kdump kernel (cached outside the repository)"
if KDIR=$(bash scripts/fetch-s390x-debs.sh 'linux-image-6.1.0-[0-9]+-s390x' 2>"$OUT/fetch.err"); then
    KERNEL=$(ls "$KDIR"/boot/vmlinuz-*)
    echo "$KERNEL"
else
    printf 'no real kernel: %s\n' "$(cat "$OUT/fetch.err")"
    echo "the demo goes on with the smallest s390x kernel image kexec-s390 accepts (tests/initrd.py)"
    KERNEL=$($PY -m tests.initrd kernel "$OUT/vmlinuz-minimal")
fi
$PY -m tests.initrd initrd "$OUT/initrd.img" $((1 << 20)) >/dev/null

step "1. the production system: 1 GiB, 2 CPUs, crashkernel=256M"
run $PY -m s390_machine.cli create "$OUT/machine" --memory 1G --cpus 2 --crashkernel 256M

step "2. kexec-s390 load -p: kernel + initrd into crashkernel memory, no page tables, checksums in meminfo"
run $PY -m kexec_s390.cli load -p "$KERNEL" --initrd "$OUT/initrd.img" --append "console=ttysclp0" \
    --reuse-cmdline --machine "$OUT/machine"
run $PY -m kexec_s390.cli status --machine "$OUT/machine"

step "3. the crash: store status, purgatory check, swap, kdump starts"
run $PY -m s390_machine.cli panic "$OUT/machine" --cpu 1

step "4. the kdump kernel builds the ELF header itself and saves /proc/vmcore"
run $PY -m vmcore.cli save --machine "$OUT/machine" -o "$OUT/vmcore.elf"

step "4b. what kdump users save: makedumpfile's page classes from VMCOREINFO and struct pages, -d 31 -c"
run $PY -m vmcore.cli save --machine "$OUT/machine" --mem-usage
run $PY -m vmcore.cli save --machine "$OUT/machine" -d 31 -c -o "$OUT/vmcore.d31"
run ls -ls "$OUT/vmcore.elf" "$OUT/vmcore.d31"

step "5. inspection"
run $PY -m vmcore.cli info "$OUT/vmcore.elf"
run $PY -m vmcore.cli regs "$OUT/vmcore.elf" --cpu 0
run $PY -m vmcore.cli dmesg "$OUT/vmcore.elf"
if command -v eu-readelf >/dev/null; then run eu-readelf -n "$OUT/vmcore.elf" | head -20 || true
else echo "(eu-readelf, Debian package elfutils, would show the ELF notes here)"; fi

step "6. the stand-alone dumper: a dump device as zipl -d builds it, IPLed on a second machine"
run $PY -m s390_machine.cli create "$OUT/machine2" --memory 1G --cpus 2 --crashkernel 256M
run $PY -m kexec_s390.cli load -p "$KERNEL" --initrd "$OUT/initrd.img" --machine "$OUT/machine2"
run $PY -m zipl_sadump.cli build --device "$OUT/dasd.img" --type eckd --size 2G
step "   ... kdump intact: the dumper swaps and starts kdump"
run $PY -m zipl_sadump.cli ipl --device "$OUT/dasd.img" --machine "$OUT/machine2"
run $PY -m vmcore.cli save --machine "$OUT/machine2" -o "$OUT/vmcore2.elf"
run $PY -m vmcore.cli map "$OUT/vmcore2.elf" --rows 6 --svg "$OUT/vmcore2.svg"

step "   ... kdump overwritten by a wild pointer: the dumper takes a full dump instead"
run $PY -m s390_machine.cli create "$OUT/machine3" --memory 1G --cpus 2 --crashkernel 256M
run $PY -m kexec_s390.cli load -p "$KERNEL" --initrd "$OUT/initrd.img" --machine "$OUT/machine3"
$PY - "$OUT/machine3" <<'PYEOF'
import sys
from s390_machine.machine import Machine
with Machine.open(sys.argv[1], "write") as m:
    seg = m.meminfo_report().table.segments[1]
    m.memory.write(seg.mem + 4096, b"wild pointer was here")
    print(f"scribbled over the initrd segment at 0x{seg.mem + 4096:x}")
PYEOF
run $PY -m zipl_sadump.cli ipl --device "$OUT/dasd.img" --machine "$OUT/machine3"
step "   ... the dump copied off the device as zgetdump does it (ELF, for crash, drgn and gdb)"
run $PY -m zipl_sadump.cli extract --device "$OUT/dasd.img" -o "$OUT/dump.elf"
run $PY -m vmcore.cli info "$OUT/dump.elf"
run $PY -m vmcore.cli verify "$OUT/dump.elf"
