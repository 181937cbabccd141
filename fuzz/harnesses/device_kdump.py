"""The kdump component table a dump device carries (sadump build --kdump-kernel):
zipl_sadump.kdumpdev.read_device_kdump, then the kernel it names through parse_kernel_image
as the dumper does before starting it.  Input: fuzz/sparse.py (one file)."""

from fuzz.harnesses import _files
from meminfo_abi.kernel_image import parse_kernel_image
from zipl_sadump.kdumpdev import read_device_kdump

MAX_LEN = 0x20000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"zKDUMP01",
    b"\x00\x00\x00\x01",
    b"S390EP",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
)


def target(data: bytes) -> None:
    path = _files.sparse_files(data, 1)[0]
    comps = read_device_kdump(path)
    if comps is None:
        return
    comps.to_json()
    if comps.kernel_size and comps.kernel_size <= 1 << 20:
        with open(path, "rb") as fh:
            fh.seek(comps.kernel_offset)
            parse_kernel_image(fh.read(comps.kernel_size), "kdump kernel on the device")


def seeds(ctx):
    from fuzz import sparse
    from zipl_sadump.kdumpdev import add_kdump_kernel
    kernel = ctx._file("kdump-kernel.img", ctx.kernel_head())
    initrd = ctx._file("kdump-initrd.img", bytes(range(256)) * 8)
    for name, kw in (("dk-1", {"initrd": initrd, "append": "maxcpus=1 reset_devices"}), ("dk-2", {})):
        dev = ctx.device(name, "eckd", 4 << 20)
        add_kdump_kernel(dev, kernel, **kw)
        yield sparse.encode_files([dev])
