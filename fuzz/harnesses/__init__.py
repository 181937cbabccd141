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
)

# parsers other engineers are still writing: fuzzed once their files exist
REQUIRES = {
    "kdump_compressed": ("vmcore/formats/kdump_compressed.py", "meminfo_abi/diskdump.py"),
    "flattened": ("vmcore/formats/flattened.py", "vmcore/formats/kdump_compressed.py"),
    "s390_format": ("vmcore/formats/s390.py",),
}
