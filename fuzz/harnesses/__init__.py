"""The harnesses, one per parser that reads untrusted bytes.

NAMES lists them in run order.  A harness whose parser is still being written
(REQUIRES names its file) is skipped, with a note, until the file exists.
"""

NAMES = (
    "kernel_image",
    "meminfo_page",
    "segment_table",
    "check_meminfo",
    "vmcoreinfo",
    "elfnotes",
    "elfcore",
    "elf_dump",
    "dmesg",
    "machine_state",
    "device",
    "s390dump_stream",
    "fulldump_device",
    "device_kdump",
    "kdump_compressed",
    "flattened",
    "s390_format",
    "btf",
)

# parsers other engineers are still writing: fuzzed once their files exist
REQUIRES = {
    "kdump_compressed": ("vmcore/formats/kdump/reader.py", "meminfo_abi/diskdump.py"),
    "flattened": ("vmcore/formats/flattened.py", "vmcore/formats/kdump/reader.py"),
    "s390_format": ("vmcore/formats/s390.py",),
}


# libFuzzer dictionary tokens of s390 dump files (magics, end marker, typical words), shared
# by the harnesses that parse them
S390_DUMP_TOKENS = (
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfe",
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfd",
    b"DUMP_END",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x78\x01",
)


def extracted_dump_seeds(ctx, specs):
    """Seeds: the s390 dump file `sadump extract` gives of each (name, device kind, compress)."""
    from fuzz import sparse
    for name, kind, compress in specs:
        devs = ctx.dumped_device(name, kind, compress)
        yield sparse.encode_files([ctx.extracted(name + ".s390", devs)])
