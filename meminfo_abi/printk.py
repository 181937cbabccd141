"""printk log layouts of a 64-bit big-endian (s390x) Linux kernel, declared with construct.

Two generations (the VMCOREINFO note: Documentation/admin-guide/kdump/vmcoreinfo.rst, arch/s390/kernel/crash_dump.c):

A. The lockless printk ring buffer (Linux >= 5.10).  Layout declared here is the one
   of 5.18 .. 6.x (e.g. 6.1), where ``prb_desc_ring`` gained ``last_finalized_id``
   (renamed ``last_finalized_seq`` in 6.10 - same size and place).  5.10 .. 5.17
   lack that word, so there ``SIZE(prb_desc_ring)`` is 40 and ``printk_ringbuffer``
   80; readers must take sizes/offsets from VMCOREINFO, not from here.

   Sizes (bytes) and offsets used, all naturally aligned on a LP64 ABI:

   ====================  ====  ===========================================================
   atomic_long_t            8  counter +0
   prb_data_blk_lpos       16  begin +0, next +8
   prb_desc                24  state_var +0, text_blk_lpos +8
   dev_printk_info         64  subsystem[16] +0, device[48] +16
   printk_info             88  seq +0, ts_nsec +8, text_len +16 (u16), facility +18 (u8),
                               flags:5/level:3 +19 (u8), caller_id +20 (u32), dev_info +24
   prb_data_ring           32  size_bits +0 (u32, 4 bytes hole), data +8, head_lpos +16,
                               tail_lpos +24
   prb_desc_ring           48  count_bits +0 (u32, hole), descs +8, infos +16, head_id +24,
                               tail_id +32, last_finalized_id +40
   printk_ringbuffer       88  desc_ring +0, text_data_ring +48, fail +80
   latched_seq             24  latch (seqcount_latch_t: u32 sequence, hole) +0, val[2] +8
   prb_data_block          8+  id +0 (unsigned long), data[] +8
   ====================  ====  ===========================================================

B. The legacy ``log_buf`` (Linux 3.5 .. 5.9): ``struct printk_log`` of 16 bytes
   (ts_nsec +0, len +8, text_len +10, dict_len +12, facility +14, flags:5/level:3 +15)
   followed by text, dict and padding to LOG_ALIGN (8).  With CONFIG_PRINTK_CALLER
   (5.1 .. 5.9) a ``u32 caller_id`` follows at +16 and the struct grows to 24 bytes.
   (In 3.5 .. 3.10 the struct was called ``struct log``; the keys here use the
   later ``printk_log`` name.)

Bit fields on big-endian: ``u8 flags:5; u8 level:3;`` share one byte.  The s390x
ELF ABI (like every big-endian GCC target) assigns bit-field storage starting at
the most significant end of the storage unit, so the field declared first,
``flags``, takes bits 7..3 and ``level`` takes bits 2..0: byte = flags << 3 | level.
(On little-endian x86 it would be the other way round: flags in bits 4..0.)
construct's BitStruct also parses from the most significant bit down, so the
declaration below reads the byte the same way.

Logical positions and ids: lpos values count bytes written to the data ring
since boot (modulo 2**64) and start at -DATA_SIZE so that the first block lands
at index 0 and the counter overflows early; descriptor ids are 62-bit counters
starting at -(count + 1) (masked), so the initial dummy descriptor is the last
array slot and the first real record uses slot 0.
"""

from __future__ import annotations

from enum import IntEnum

from construct import Array, BitsInteger, BitStruct, Bytes, Int8ub, Int16ub, Int32ub, Int64ub, Padding, Struct

U64_MASK = (1 << 64) - 1
BITS_PER_LONG = 64

# --------------------------------------------------------------------------------------------
# A. lockless ring buffer (>= 5.10)
# --------------------------------------------------------------------------------------------

atomic_long_t = Struct("counter" / Int64ub)

prb_data_blk_lpos = Struct(
    "begin" / Int64ub,
    "next" / Int64ub,
)

prb_desc = Struct(
    "state_var" / atomic_long_t,
    "text_blk_lpos" / prb_data_blk_lpos,
)

PRINTK_INFO_SUBSYSTEM_LEN = 16
PRINTK_INFO_DEVICE_LEN = 48

dev_printk_info = Struct(
    "subsystem" / Bytes(PRINTK_INFO_SUBSYSTEM_LEN),
    "device" / Bytes(PRINTK_INFO_DEVICE_LEN),
)

# The C bit fields "u8 flags:5; u8 level:3;" live in one byte; the sub-container is named
# after both members because Python has no anonymous bit-field storage units.
flags_level = BitStruct(
    "flags" / BitsInteger(5),   # first declared -> most significant bits on big-endian
    "level" / BitsInteger(3),
)

printk_info = Struct(
    "seq" / Int64ub,
    "ts_nsec" / Int64ub,
    "text_len" / Int16ub,
    "facility" / Int8ub,
    "flags_level" / flags_level,
    "caller_id" / Int32ub,
    "dev_info" / dev_printk_info,
)

prb_data_ring = Struct(
    "size_bits" / Int32ub,
    Padding(4),
    "data" / Int64ub,
    "head_lpos" / atomic_long_t,
    "tail_lpos" / atomic_long_t,
)

prb_desc_ring = Struct(
    "count_bits" / Int32ub,
    Padding(4),
    "descs" / Int64ub,
    "infos" / Int64ub,
    "head_id" / atomic_long_t,
    "tail_id" / atomic_long_t,
    "last_finalized_id" / atomic_long_t,
)

printk_ringbuffer = Struct(
    "desc_ring" / prb_desc_ring,
    "text_data_ring" / prb_data_ring,
    "fail" / atomic_long_t,
)

# seqcount_latch_t is a seqcount_t (one unsigned int without lockdep); val[] is u64 aligned.
latched_seq = Struct(
    "latch" / Struct("sequence" / Int32ub),
    Padding(4),
    "val" / Array(2, Int64ub),
)

# Header of a block in the text data ring; the text follows it.
prb_data_block = Struct("id" / Int64ub)

SIZEOF_ATOMIC_LONG = 8
SIZEOF_PRB_DATA_BLK_LPOS = 16
SIZEOF_PRB_DESC = 24
SIZEOF_DEV_PRINTK_INFO = 64
SIZEOF_PRINTK_INFO = 88
SIZEOF_PRB_DATA_RING = 32
SIZEOF_PRB_DESC_RING = 48
SIZEOF_PRINTK_RINGBUFFER = 88
SIZEOF_LATCHED_SEQ = 24
SIZEOF_PRB_DATA_BLOCK_ID = 8


class desc_state(IntEnum):
    """Descriptor states kept in the two top bits of prb_desc.state_var."""

    desc_reserved = 0x0     # reserved, a writer is filling it in
    desc_committed = 0x1    # text and info complete, may still be reopened by its writer
    desc_finalized = 0x2    # complete and immutable
    desc_reusable = 0x3     # free: its data may already be gone


DESC_FLAGS_SHIFT = BITS_PER_LONG - 2
DESC_FLAGS_MASK = 3 << DESC_FLAGS_SHIFT
DESC_ID_MASK = U64_MASK & ~DESC_FLAGS_MASK

# Special text_blk_lpos values: bit 0 set means "no data block".
FAILED_LPOS = 0x1           # the data could not be allocated (record lost its text)
NO_LPOS = 0x3               # a record with an empty text

# printk_info.flags
LOG_NEWLINE = 2             # text ended with a newline
LOG_CONT = 8                # continuation of the previous record

PRB_AVGBITS = 5             # average record text is 32 bytes: size_bits = count_bits + 5
CONFIG_LOG_BUF_SHIFT_DEFAULT = 17
PRINTKRB_RECORD_MAX = 1024

# The vmcoreinfo LENGTH() names of the dev_printk_info arrays
LENGTH_PRINTK_INFO_SUBSYSTEM = "LENGTH(printk_info_subsystem)"
LENGTH_PRINTK_INFO_DEVICE = "LENGTH(printk_info_device)"


def descs_count(count_bits: int) -> int:
    return 1 << count_bits


def data_size(size_bits: int) -> int:
    return 1 << size_bits


def desc_index(count_bits: int, n: int) -> int:
    """Array slot of a descriptor id or of a sequence number."""
    return n & (descs_count(count_bits) - 1)


def data_index(size_bits: int, lpos: int) -> int:
    """Byte offset inside the data array of a logical position."""
    return lpos & (data_size(size_bits) - 1)


def data_wraps(size_bits: int, lpos: int) -> int:
    """How many times the data array had been filled when lpos was reached."""
    return (lpos & U64_MASK) >> size_bits


def data_this_wrap_start_lpos(size_bits: int, lpos: int) -> int:
    return lpos & ~(data_size(size_bits) - 1) & U64_MASK


def desc_sv(id_: int, state: int) -> int:
    """Compose a state_var from an id and a state."""
    return ((state & 3) << DESC_FLAGS_SHIFT) | (id_ & DESC_ID_MASK)


def desc_id(state_var: int) -> int:
    return state_var & DESC_ID_MASK


def desc_state_of(state_var: int) -> int:
    return (state_var >> DESC_FLAGS_SHIFT) & 3


def desc_id_prev_wrap(count_bits: int, id_: int) -> int:
    """The id that used the same slot one lap of the descriptor array earlier."""
    return (id_ - descs_count(count_bits)) & DESC_ID_MASK


def desc0_id(count_bits: int) -> int:
    """Initial head/tail id: -(count + 1) masked, i.e. the last array slot."""
    return (-(descs_count(count_bits) + 1)) & DESC_ID_MASK


def blk0_lpos(size_bits: int) -> int:
    """Initial head/tail lpos: -DATA_SIZE, i.e. index 0 one wrap before the 64-bit overflow."""
    return (-data_size(size_bits)) & U64_MASK


def lpos_dataless(lpos: int) -> bool:
    return bool(lpos & 1)


def blk_dataless(begin: int, next_: int) -> bool:
    return lpos_dataless(begin) and lpos_dataless(next_)


def to_blk_size(text_size: int) -> int:
    """Size a text needs in the data ring: the id word plus the text, rounded up to 8."""
    size = text_size + SIZEOF_PRB_DATA_BLOCK_ID
    return (size + SIZEOF_PRB_DATA_BLOCK_ID - 1) & ~(SIZEOF_PRB_DATA_BLOCK_ID - 1)


def max_text_size(size_bits: int) -> int:
    """Largest text a block may carry so that pushing the tail never passes the head.

    A block is at most half the data ring (the bound the kernel developers settled on;
    older kernels allowed DATA_SIZE - 8, which can misbehave for wrapping blocks).
    """
    return data_size(size_bits) // 2 - SIZEOF_PRB_DATA_BLOCK_ID


def get_next_lpos(size_bits: int, lpos: int, blk_size: int) -> int:
    """Logical end of a block of blk_size bytes allocated at lpos (unbounded ints).

    A block that would not end inside the wrap it begins in is placed at index 0 of
    the next wrap instead: its ``next`` is that wrap's start plus its size.  Like
    kernels up to 6.1x, a block ending exactly at the end of the array counts as
    wrapping (newer kernels keep it in place; readers accept both).
    """
    next_lpos = lpos + blk_size
    if (lpos >> size_bits) == (next_lpos >> size_bits):
        return next_lpos
    return (next_lpos & ~(data_size(size_bits) - 1)) + blk_size


def data_block_range(size_bits: int, begin: int, next_: int) -> tuple[int, int] | None:
    """Where a (non-dataless) block lives: (index in the data array, block size incl. id).

    begin/next are the stored 64-bit values.  Returns None for an illegal description
    (wrong order, more than one wrap apart, misaligned, shorter than the id).
    """
    begin &= U64_MASK
    next_ &= U64_MASK
    size = data_size(size_bits)
    if begin != next_ and data_wraps(size_bits, begin) == data_wraps(size_bits, next_ - 1) and begin < next_:
        # regular block, entirely in one wrap (next may sit exactly on the wrap boundary)
        index, blk = data_index(size_bits, begin), next_ - begin
    elif data_wraps(size_bits, begin + size) == data_wraps(size_bits, next_):
        # wrapping block: stored from index 0 of the wrap that next belongs to
        index, blk = 0, data_index(size_bits, next_)
    else:
        return None
    if begin % SIZEOF_PRB_DATA_BLOCK_ID or next_ % SIZEOF_PRB_DATA_BLOCK_ID:
        return None
    if blk < SIZEOF_PRB_DATA_BLOCK_ID or index + blk > size:
        return None
    return index, blk


def pack_flags_level(flags: int, level: int) -> int:
    """The shared bit-field byte: flags in bits 7..3, level in bits 2..0 (big-endian GCC)."""
    return ((flags & 0x1F) << 3) | (level & 0x7)


def unpack_flags_level(byte: int) -> tuple[int, int]:
    """(flags, level) from the shared bit-field byte."""
    return (byte >> 3) & 0x1F, byte & 0x7


def ringbuffer_vmcoreinfo_layout() -> dict[str, str]:
    """SIZE/OFFSET/LENGTH keys that log_buf_vmcoreinfo_setup() publishes (no SYMBOLs)."""
    d: dict[str, int] = {
        "SIZE(printk_ringbuffer)": SIZEOF_PRINTK_RINGBUFFER,
        "OFFSET(printk_ringbuffer.desc_ring)": 0,
        "OFFSET(printk_ringbuffer.text_data_ring)": SIZEOF_PRB_DESC_RING,
        "OFFSET(printk_ringbuffer.fail)": SIZEOF_PRB_DESC_RING + SIZEOF_PRB_DATA_RING,
        "SIZE(prb_desc_ring)": SIZEOF_PRB_DESC_RING,
        "OFFSET(prb_desc_ring.count_bits)": 0,
        "OFFSET(prb_desc_ring.descs)": 8,
        "OFFSET(prb_desc_ring.infos)": 16,
        "OFFSET(prb_desc_ring.head_id)": 24,
        "OFFSET(prb_desc_ring.tail_id)": 32,
        "SIZE(prb_desc)": SIZEOF_PRB_DESC,
        "OFFSET(prb_desc.state_var)": 0,
        "OFFSET(prb_desc.text_blk_lpos)": 8,
        "SIZE(prb_data_blk_lpos)": SIZEOF_PRB_DATA_BLK_LPOS,
        "OFFSET(prb_data_blk_lpos.begin)": 0,
        "OFFSET(prb_data_blk_lpos.next)": 8,
        "SIZE(printk_info)": SIZEOF_PRINTK_INFO,
        "OFFSET(printk_info.seq)": 0,
        "OFFSET(printk_info.ts_nsec)": 8,
        "OFFSET(printk_info.text_len)": 16,
        "OFFSET(printk_info.caller_id)": 20,
        "OFFSET(printk_info.dev_info)": 24,
        "SIZE(dev_printk_info)": SIZEOF_DEV_PRINTK_INFO,
        "OFFSET(dev_printk_info.subsystem)": 0,
        LENGTH_PRINTK_INFO_SUBSYSTEM: PRINTK_INFO_SUBSYSTEM_LEN,
        "OFFSET(dev_printk_info.device)": PRINTK_INFO_SUBSYSTEM_LEN,
        LENGTH_PRINTK_INFO_DEVICE: PRINTK_INFO_DEVICE_LEN,
        "SIZE(prb_data_ring)": SIZEOF_PRB_DATA_RING,
        "OFFSET(prb_data_ring.size_bits)": 0,
        "OFFSET(prb_data_ring.data)": 8,
        "OFFSET(prb_data_ring.head_lpos)": 16,
        "OFFSET(prb_data_ring.tail_lpos)": 24,
        "SIZE(atomic_long_t)": SIZEOF_ATOMIC_LONG,
        "OFFSET(atomic_long_t.counter)": 0,
        "SIZE(latched_seq)": SIZEOF_LATCHED_SEQ,
        "OFFSET(latched_seq.val)": 8,
    }
    return {k: str(v) for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# B. legacy log_buf (3.5 .. 5.9)
# --------------------------------------------------------------------------------------------

printk_log = Struct(
    "ts_nsec" / Int64ub,
    "len" / Int16ub,
    "text_len" / Int16ub,
    "dict_len" / Int16ub,
    "facility" / Int8ub,
    "flags_level" / flags_level,
)

SIZEOF_PRINTK_LOG = 16
SIZEOF_PRINTK_LOG_WITH_CALLER = 24      # CONFIG_PRINTK_CALLER: + u32 caller_id at 16, padded
PRINTK_LOG_CALLER_ID_OFFSET = 16
LOG_ALIGN = 8                           # __alignof__(struct printk_log) on 64-bit
LOG_BUF_LEN_MAX = 1 << 31

# legacy printk_log.flags
LOG_NOCONS = 1
LOG_PREFIX = 4
# LOG_NEWLINE (2) and LOG_CONT (8) have the same values as in the ring buffer

MAX_LOG_TAKE_PART = 4                   # a too long message is cut to log_buf_len / 4
TRUNC_MSG = b"<truncated>"


def msg_used_size(text_len: int, dict_len: int) -> tuple[int, int]:
    """(record size, padding) of a legacy record: header + text + dict, LOG_ALIGN aligned."""
    size = SIZEOF_PRINTK_LOG + text_len + dict_len
    pad = (-size) & (LOG_ALIGN - 1)
    return size + pad, pad


def legacy_vmcoreinfo_layout() -> dict[str, str]:
    """SIZE/OFFSET keys of the legacy log_buf (no SYMBOLs)."""
    return {
        "SIZE(printk_log)": str(SIZEOF_PRINTK_LOG),
        "OFFSET(printk_log.ts_nsec)": "0",
        "OFFSET(printk_log.len)": "8",
        "OFFSET(printk_log.text_len)": "10",
        "OFFSET(printk_log.dict_len)": "12",
    }
