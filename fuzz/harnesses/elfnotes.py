"""ELF notes: iter_notes over a PT_NOTE segment, cpus_from_notes for the register state."""

from meminfo_abi.elfnotes import cpus_from_notes, iter_notes, note_type_name

MAX_LEN = 16384
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"CORE\x00\x00\x00\x00",
    b"LINUX\x00\x00\x00",
    b"VMCOREINFO\x00\x00",
    b"\x00\x00\x00\x05",
    b"\x00\x00\x01\x50",
    b"\x00\x00\x03\x09",
    b"\x00\x00\x03\x0a",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",  # an empty note (issue 16: millions of them)
)


def target(data: bytes) -> None:
    notes = list(iter_notes(data))
    for n in notes:
        note_type_name(n.type)
        repr(n)
    for regs in cpus_from_notes(notes):
        regs.to_json()


def seeds(ctx):
    from vmcore.formats.elf import build_notes
    for kw in ({}, {"vector": False, "cpus": 1}, {"vmcoreinfo": False, "cpus": 3}):
        with ctx.dump_model(**kw) as d:
            yield build_notes(d)
            yield build_notes(d, todpreg_size=8)
    from fuzz import crafted
    yield crafted.EMPTY_NOTE * (MAX_LEN // len(crafted.EMPTY_NOTE))     # the note bomb's note area
