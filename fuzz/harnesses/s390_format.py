"""s390 dump files (flat ...23fd and extended ...23fe streams) through vmcore.formats.open_dump,
the reader in vmcore/formats/s390.py.  Input: fuzz/sparse.py."""

from fuzz.harnesses import S390_DUMP_TOKENS, _files, extracted_dump_seeds
from fuzz.harnesses.elf_dump import exercise
from vmcore.formats import open_dump

MAX_LEN = 0x10000
DICT = S390_DUMP_TOKENS  # libFuzzer dictionary tokens (-dict)


def target(data: bytes) -> None:
    exercise(open_dump(_files.sparse_files(data, 1)[0]))


def seeds(ctx):
    return extracted_dump_seeds(ctx, (("v-z", "eckd", True), ("v-raw", "eckd", False), ("v-tape", "tape", False)))
