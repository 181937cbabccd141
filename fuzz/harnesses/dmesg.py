"""The kernel log: vmcore.dmesg.read_dmesg over the lockless printk ring buffer and the legacy
log_buf, everything located through VMCOREINFO.

Input: 2 bytes (big-endian) length of the VMCOREINFO text, the text, 1 flag byte (bit 0:
--partial, bits 1-3: record limit 2**n), then physical memory from address 0."""

from dumpkit.errors import BadInputError
from meminfo_abi.vmcoreinfo import parse_vmcoreinfo
from vmcore.dmesg import format_dmesg, read_dmesg

MAX_LEN = 0x10000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"SYMBOL(prb)=",
    b"SYMBOL(log_buf)=",
    b"SYMBOL(clear_seq)=",
    b"SIZE(printk_ringbuffer)=",
    b"SIZE(prb_desc)=",
    b"SIZE(printk_info)=",
    b"SIZE(printk_log)=",
    b"OFFSET(",
    b"=ffffffffffffffff",
    b"=0\x0a",
    b"\x0a",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x3f\xff\xff\xff\xff\xff\xff\xff",
)


def split(data: bytes) -> tuple[bytes, int, bytes]:
    n = int.from_bytes(data[:2].ljust(2, b"\0"), "big")
    text = data[2:2 + n]
    flags = data[2 + n] if len(data) > 2 + n else 0
    return text, flags, data[3 + n:]


def target(data: bytes) -> None:
    text, flags, memory = split(data)
    size = len(memory)

    def read(addr: int, length: int) -> bytes:
        if addr < 0 or length < 0 or addr + length > size:
            raise BadInputError(f"0x{addr:x}+0x{length:x} is outside memory")
        return memory[addr:addr + length]

    vi = parse_vmcoreinfo(text)
    recs = read_dmesg(read, vi, partial=bool(flags & 1), max_records=1 << (1 + ((flags >> 1) & 7) * 3))
    format_dmesg(recs, show_caller=bool(flags & 0x10))
    read_dmesg(read, dict(vi.entries), virt_to_phys=lambda v: v ^ (flags & 0x20))


def encode(text: bytes, flags: int, memory: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text + bytes([flags]) + memory.rstrip(b"\0")


def seeds(ctx):
    from fuzz.seedbuild import _records
    for layout, kw, recs in (("ringbuffer", {}, _records()), ("legacy", {}, _records()),
                             ("ringbuffer", {"count_bits": 3, "size_bits": 9}, _records(40, True)),
                             ("legacy", {"log_buf_len": 512}, _records(40, True)),
                             ("ringbuffer", {"clear_seq": 3}, _records())):
        keys, mem = ctx.printk_image(layout, recs, base=0x100, **kw)
        text = "".join(f"{k}={v}\n" for k, v in keys.items()).encode()
        yield encode(text, 0, bytes(mem[:0x10000 - len(text) - 3]))
        yield encode(text, 1 | 0x10, bytes(mem[:0x10000 - len(text) - 3]))
