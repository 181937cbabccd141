"""The ELF dump reader through vmcore.formats.open_dump: probe, headers, notes, CPUs, PT_LOAD
chunks, VMCOREINFO (note or memory), then what `vmcore info` computes and bounded reads of
every chunk."""

from fuzz.harnesses import _files
from dumpkit.errors import DumpToolError
from vmcore import inspect
from vmcore.formats import open_dump

MAX_LEN = 0x20000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"\x7fELF\x02\x02\x01",
    b"\x00\x04\x00\x16",
    b"\xff\xff",
    b"CORE\x00",
    b"LINUX\x00",
    b"VMCOREINFO\x00",
    b"OSINFOSZ",
    b"IDENTITYBASE=",
    b"PAGESIZE=",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x00\x00\x00\x04\x00\x00\x00\x00",  # a PT_NOTE program header (issue 16: many over one note area)
)
READ = 0x2000


def exercise(dump) -> None:
    with dump:
        inspect.dump_info(dump)
        dump.attrs.to_json()
        for regs in dump.cpus:
            regs.to_json()
        for c in dump.chunks[:32]:
            try:
                dump.read(c.start, min(c.size, READ))
                dump.read(c.end - min(c.size, READ), min(c.size, READ))
            except DumpToolError:       # an absent chunk says so; the walk goes on
                pass
        for _ in zip(range(4), dump.iter_data(block_size=0x10000, end=min(dump.size, 1 << 20))):
            pass


def target(data: bytes) -> None:
    exercise(open_dump(_files.sparse_files(data, 1)[0]))


def seeds(ctx):
    from fuzz import sparse
    yield sparse.encode_files([ctx.elf_file("e1.elf")])
    yield sparse.encode_files([ctx.elf_file("e2.elf", gaps=True, todpreg_size=8)])
    yield sparse.encode_files([ctx.elf_file("e3.elf", vmcoreinfo=False, vector=False, cpus=1)])
    from fuzz import crafted               # the note bomb of issue 16, 2000 headers instead of 65,000
    yield sparse.encode_files([crafted.note_bomb_bytes(headers=2000)])
