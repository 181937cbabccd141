"""Kernel images: meminfo_abi.kernel_image.read_kernel_image, then the segment plan built from the image
(command line limit, parameter area patching) as `kexec-s390 load -p` does."""

from fuzz.harnesses import _files
from meminfo_abi.kernel_image import read_kernel_image
from kexec_s390.plan import build_command_line, plan_load

MAX_LEN = 0x13000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"S390EP",
    b"\x7fELF",
    b"\x7fELF\x02\x02\x01",
    b"MZ",
    b"HdrS",
    b"ARM\x64",
    b"\x1f\x8b",
    b"\x00\x08\x00\x00\x80\x01\x00\x00",
    b"\x00\x00\x00\x00\x00\x00\x10\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
)


def target(data: bytes) -> None:
    image = read_kernel_image(_files.raw_file(data))
    line = build_command_line(image, ["root=/dev/ram0 maxcpus=1"], ["reset_devices"], None, True)
    plan = plan_load(image, None, line, kdump=True, crash_base=0x10000000, crash_size=0x10000000)
    plan.describe(with_checksums=True)


def seeds(ctx):
    yield ctx.kernel_head()
    deb = ctx.debian_kernel_head()
    if deb is not None:
        yield deb
    # foreign files the image reader must name
    yield b"\x7fELF\x02\x02\x01" + bytes(9) + b"\x00\x02\x00\x16" + bytes(44)
    yield b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + bytes(44)
    yield b"MZ" + bytes(0x200) + b"HdrS" + bytes(64)
    yield b"\x1f\x8b\x08\x00" + bytes(32)
