"""`vmcore dmesg`: the kernel log out of a dump's memory, located through VMCOREINFO.

Two layouts, chosen by the keys present:
  * SYMBOL(prb)      - the lockless printk ring buffer (Linux >= 5.10); descriptors are
                       walked from tail_id to head_id and only committed/finalized ones
                       whose id matches, with a data block carrying the same id, count.
  * SYMBOL(log_buf)  - the legacy buffer (3.5 .. 5.9); records are followed from
                       log_first_idx to log_next_idx, a zero length meaning "continue
                       at the start of the buffer".

All sizes and offsets come from VMCOREINFO (so other kernel versions work); the only
layout knowledge taken from meminfo_abi.printk is what the kernel does not export:
facility and the flags/level byte follow text_len (ring buffer) / dict_len (legacy).

Everything read from memory is bounded; malformed structures raise BadInputError
naming the key or field, an unreadable or inconsistent single record is skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Mapping

from meminfo_abi import printk as P
from dumpkit.errors import BadInputError, DumpToolError, IncompleteDumpError

Read = Callable[[int, int], bytes]

MAX_COUNT_BITS = 30
MAX_SIZE_BITS = 32
MAX_STRUCT_SIZE = 4096          # bound for any SIZE() we read as a whole
DEFAULT_MAX_RECORDS = 1 << 21   # bound for the walk (corrupt head/tail or huge rings)

_SKIPPABLE = (BadInputError, IncompleteDumpError)


@dataclass(frozen=True)
class LogRecord:
    seq: int
    ts_nsec: int
    level: int
    facility: int
    caller_id: int
    text: str


# ---------------------------------------------------------------------------------------------
# memory and key access
# ---------------------------------------------------------------------------------------------

class _Mem:
    def __init__(self, read: Read, virt_to_phys: Callable[[int], int]):
        self._read = read
        self._v2p = virt_to_phys

    def read(self, vaddr: int, length: int, what: str) -> bytes:
        if length == 0:
            return b""
        if not (0 <= vaddr and vaddr + length <= 1 << 64):
            raise BadInputError(f"{what}: address {vaddr:#x}+{length} outside the 64-bit space")
        try:
            paddr = self._v2p(vaddr)
            if not isinstance(paddr, int) or paddr < 0:
                raise BadInputError(f"{what}: virtual address {vaddr:#x} has no physical address")
            data = self._read(paddr, length)
        except DumpToolError:
            raise
        except Exception as e:  # a reader never lets anything else escape
            raise BadInputError(f"{what}: cannot read {length} bytes at {vaddr:#x}: {e}") from e
        if data is None or len(data) != length:
            raise BadInputError(f"{what}: short read at {vaddr:#x} ({length} bytes wanted)")
        return bytes(data)

    def u32(self, vaddr: int, what: str) -> int:
        return struct.unpack(">I", self.read(vaddr, 4, what))[0]

    def u64(self, vaddr: int, what: str) -> int:
        return struct.unpack(">Q", self.read(vaddr, 8, what))[0]


def _check_mapping(vmcoreinfo: object) -> None:
    # a dict, or anything dict-like with get() and "in" (e.g. meminfo_abi.vmcoreinfo.VmcoreInfo)
    if not (hasattr(vmcoreinfo, "get") and hasattr(vmcoreinfo, "__contains__")):
        raise BadInputError("vmcoreinfo must be a mapping of KEY -> value")


class _Keys:
    def __init__(self, vmcoreinfo: Mapping[str, str]):
        _check_mapping(vmcoreinfo)
        self._d = vmcoreinfo

    def has(self, key: str) -> bool:
        return key in self._d

    def _raw(self, key: str) -> str:
        v = self._d.get(key)
        if v is None:
            raise BadInputError(f"vmcoreinfo lacks {key}")
        if not isinstance(v, str):
            raise BadInputError(f"vmcoreinfo {key} is not a string")
        return v.strip()

    def symbol(self, key: str) -> int:
        v = self._raw(key)
        try:
            n = int(v, 16)
        except ValueError:
            raise BadInputError(f"vmcoreinfo {key}={v!r} is not a hex address") from None
        if not 0 <= n <= P.U64_MASK:
            raise BadInputError(f"vmcoreinfo {key}={v!r} out of range")
        return n

    def number(self, key: str, default: int | None = None, limit: int = MAX_STRUCT_SIZE) -> int:
        if default is not None and self._d.get(key) is None:
            return default
        v = self._raw(key)
        try:
            n = int(v, 10)
        except ValueError:
            raise BadInputError(f"vmcoreinfo {key}={v!r} is not a decimal number") from None
        if not 0 <= n <= limit:
            raise BadInputError(f"vmcoreinfo {key}={n} out of range 0..{limit}")
        return n

    def field(self, key: str, width: int, within: int, within_name: str, default: int | None = None) -> int:
        """An OFFSET() whose field of `width` bytes must lie inside a `within`-byte object."""
        off = self.number(key, default)
        if off + width > within:
            raise BadInputError(
                f"vmcoreinfo {key}={off}: a {width}-byte field does not fit SIZE({within_name})={within}"
            )
        return off


def _u16(b: bytes, off: int) -> int:
    return struct.unpack_from(">H", b, off)[0]


def _u32(b: bytes, off: int) -> int:
    return struct.unpack_from(">I", b, off)[0]


def _u64(b: bytes, off: int) -> int:
    return struct.unpack_from(">Q", b, off)[0]


def _text(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def detect_layout(vmcoreinfo: Mapping[str, str]) -> str:
    """'ringbuffer' (SYMBOL(prb)) or 'legacy' (SYMBOL(log_buf)); BadInputError if neither."""
    _check_mapping(vmcoreinfo)
    if "SYMBOL(prb)" in vmcoreinfo:
        return "ringbuffer"
    if "SYMBOL(log_buf)" in vmcoreinfo:
        return "legacy"
    raise BadInputError("vmcoreinfo has neither SYMBOL(prb) nor SYMBOL(log_buf): no printk log to read")


def read_dmesg(
    read: Read,
    vmcoreinfo: Mapping[str, str],
    virt_to_phys: Callable[[int], int] = lambda v: v,
    *,
    partial: bool = False,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> list[LogRecord]:
    """The kernel log records of a dump, oldest first.

    read(phys, length) -> bytes reads physical memory (BadInputError for absent memory);
    virt_to_phys maps the kernel virtual addresses of VMCOREINFO symbols and pointers.
    partial=True starts at the last "dmesg -c" (clear_seq / clear_idx), like
    makedumpfile --partial-dmesg.  At most max_records (newest) are walked.
    """
    layout = detect_layout(vmcoreinfo)
    keys = _Keys(vmcoreinfo)
    mem = _Mem(read, virt_to_phys)
    if max_records < 1:
        raise ValueError("max_records must be positive")
    try:
        if layout == "ringbuffer":
            return _read_ringbuffer(mem, keys, partial, max_records)
        return _read_legacy(mem, keys, partial, max_records)
    except DumpToolError:
        raise
    except (struct.error, ValueError, OverflowError, IndexError, UnicodeError) as e:
        raise BadInputError(f"printk log: malformed data ({e})") from e


# ---------------------------------------------------------------------------------------------
# A. lockless ring buffer
# ---------------------------------------------------------------------------------------------

def _read_ringbuffer(mem: _Mem, k: _Keys, partial: bool, max_records: int) -> list[LogRecord]:
    counter = k.number("OFFSET(atomic_long_t.counter)", default=0, limit=64)

    rb_size = k.number("SIZE(printk_ringbuffer)")
    dr = k.number("OFFSET(printk_ringbuffer.desc_ring)")
    tr = k.number("OFFSET(printk_ringbuffer.text_data_ring)")
    rbn = "printk_ringbuffer"
    count_bits_off = dr + k.number("OFFSET(prb_desc_ring.count_bits)")
    descs_off = dr + k.number("OFFSET(prb_desc_ring.descs)")
    infos_off = dr + k.number("OFFSET(prb_desc_ring.infos)")
    head_id_off = dr + k.number("OFFSET(prb_desc_ring.head_id)") + counter
    tail_id_off = dr + k.number("OFFSET(prb_desc_ring.tail_id)") + counter
    size_bits_off = tr + k.number("OFFSET(prb_data_ring.size_bits)")
    data_off = tr + k.number("OFFSET(prb_data_ring.data)")
    for name, off, width in (
        ("prb_desc_ring.count_bits", count_bits_off, 4), ("prb_desc_ring.descs", descs_off, 8),
        ("prb_desc_ring.infos", infos_off, 8), ("prb_desc_ring.head_id", head_id_off, 8),
        ("prb_desc_ring.tail_id", tail_id_off, 8), ("prb_data_ring.size_bits", size_bits_off, 4),
        ("prb_data_ring.data", data_off, 8),
    ):
        if off + width > rb_size:
            raise BadInputError(f"vmcoreinfo: {rbn} field {name} at {off} lies outside SIZE({rbn})={rb_size}")

    desc_size = k.number("SIZE(prb_desc)")
    sv_off = k.field("OFFSET(prb_desc.state_var)", 0, desc_size, "prb_desc") + counter
    lpos_off = k.number("OFFSET(prb_desc.text_blk_lpos)")
    begin_off = lpos_off + k.number("OFFSET(prb_data_blk_lpos.begin)")
    next_off = lpos_off + k.number("OFFSET(prb_data_blk_lpos.next)")
    for name, off in (("prb_desc.state_var", sv_off), ("prb_data_blk_lpos.begin", begin_off),
                      ("prb_data_blk_lpos.next", next_off)):
        if off + 8 > desc_size:
            raise BadInputError(f"vmcoreinfo: {name} at {off} lies outside SIZE(prb_desc)={desc_size}")

    info_size = k.number("SIZE(printk_info)")
    seq_off = k.field("OFFSET(printk_info.seq)", 8, info_size, "printk_info")
    ts_off = k.field("OFFSET(printk_info.ts_nsec)", 8, info_size, "printk_info")
    # facility and flags:5/level:3 directly follow text_len (not exported separately)
    tl_off = k.field("OFFSET(printk_info.text_len)", 4, info_size, "printk_info")
    caller_off = k.field("OFFSET(printk_info.caller_id)", 4, info_size, "printk_info")

    # the ring buffer object
    prb_ptr = mem.u64(k.symbol("SYMBOL(prb)"), "prb (pointer to the printk ring buffer)")
    rb = mem.read(prb_ptr, rb_size, "struct printk_ringbuffer")
    count_bits = _u32(rb, count_bits_off)
    if count_bits > MAX_COUNT_BITS:
        raise BadInputError(f"prb_desc_ring.count_bits={count_bits} exceeds {MAX_COUNT_BITS}")
    size_bits = _u32(rb, size_bits_off)
    if not 3 < size_bits <= MAX_SIZE_BITS:
        raise BadInputError(f"prb_data_ring.size_bits={size_bits} outside 4..{MAX_SIZE_BITS}")
    descs = _u64(rb, descs_off)
    infos = _u64(rb, infos_off)
    data = _u64(rb, data_off)
    head_id = _u64(rb, head_id_off)
    tail_id = _u64(rb, tail_id_off)
    if head_id & ~P.DESC_ID_MASK or tail_id & ~P.DESC_ID_MASK:
        raise BadInputError(f"prb_desc_ring.head_id={head_id:#x}/tail_id={tail_id:#x} carry state bits")
    count = 1 << count_bits
    n = ((head_id - tail_id) & P.DESC_ID_MASK) + 1
    if n > count:
        raise BadInputError(
            f"prb_desc_ring.tail_id={tail_id:#x} is {n - 1} ids behind head_id={head_id:#x}, "
            f"more than the {count} descriptors"
        )
    if n > max_records:
        tail_id = (head_id - max_records + 1) & P.DESC_ID_MASK
        n = max_records

    first_seq = 0
    if partial:
        first_seq = _read_clear_seq(mem, k)

    data_size = 1 << size_bits
    out: list[LogRecord] = []
    for i in range(n):
        id_ = (tail_id + i) & P.DESC_ID_MASK
        slot = id_ & (count - 1)
        try:
            desc = mem.read(descs + slot * desc_size, desc_size, f"prb_desc[{slot}]")
            sv = _u64(desc, sv_off)
            if P.desc_id(sv) != id_ or P.desc_state_of(sv) not in (
                P.desc_state.desc_committed, P.desc_state.desc_finalized
            ):
                continue                # reusable, reserved or already recycled
            info = mem.read(infos + slot * info_size, info_size, f"printk_info[{slot}]")
            seq = _u64(info, seq_off)
            if seq & (count - 1) != slot:
                continue                # seq and id always share the slot
            if seq < first_seq:
                continue
            text_len = _u16(info, tl_off)
            begin, nxt = _u64(desc, begin_off), _u64(desc, next_off)
            if P.blk_dataless(begin, nxt):
                if begin != P.NO_LPOS or nxt != P.NO_LPOS:
                    continue            # the text was lost (FAILED_LPOS)
                text = b""
            else:
                rng = P.data_block_range(size_bits, begin, nxt)
                if rng is None:
                    continue
                index, blk = rng
                if text_len > blk - P.SIZEOF_PRB_DATA_BLOCK_ID or index + blk > data_size:
                    continue
                block_id = mem.u64(data + index, f"data block of descriptor {id_:#x}")
                if block_id != id_:
                    continue
                text = mem.read(data + index + P.SIZEOF_PRB_DATA_BLOCK_ID, text_len, f"text of record {seq}")
        except _SKIPPABLE:
            continue
        flags_level = info[tl_off + 3]
        out.append(LogRecord(
            seq=seq,
            ts_nsec=_u64(info, ts_off),
            level=P.unpack_flags_level(flags_level)[1],
            facility=info[tl_off + 2],
            caller_id=_u32(info, caller_off),
            text=_text(text),
        ))
    return out


def _read_clear_seq(mem: _Mem, k: _Keys) -> int:
    """clear_seq.val[latch sequence & 1] (the latch's seqcount is its first member)."""
    addr = k.symbol("SYMBOL(clear_seq)")
    size = k.number("SIZE(latched_seq)", default=P.SIZEOF_LATCHED_SEQ)
    val = k.field("OFFSET(latched_seq.val)", 16, size, "latched_seq")
    raw = mem.read(addr, size, "clear_seq")
    idx = _u32(raw, 0) & 1
    return _u64(raw, val + 8 * idx)


# ---------------------------------------------------------------------------------------------
# B. legacy log_buf
# ---------------------------------------------------------------------------------------------

def _read_legacy(mem: _Mem, k: _Keys, partial: bool, max_records: int) -> list[LogRecord]:
    hdr = k.number("SIZE(printk_log)", limit=64)
    ts_off = k.field("OFFSET(printk_log.ts_nsec)", 8, hdr, "printk_log")
    len_off = k.field("OFFSET(printk_log.len)", 2, hdr, "printk_log")
    tl_off = k.field("OFFSET(printk_log.text_len)", 2, hdr, "printk_log")
    # facility and flags:5/level:3 directly follow dict_len
    dl_off = k.field("OFFSET(printk_log.dict_len)", 4, hdr, "printk_log")
    if hdr < 8:
        raise BadInputError(f"vmcoreinfo SIZE(printk_log)={hdr} too small")
    # CONFIG_PRINTK_CALLER (5.1 .. 5.9) appends u32 caller_id, making the header 24 bytes
    caller_off = P.PRINTK_LOG_CALLER_ID_OFFSET if hdr == P.SIZEOF_PRINTK_LOG_WITH_CALLER else None

    log_buf = mem.u64(k.symbol("SYMBOL(log_buf)"), "log_buf (pointer)")
    buf_len = mem.u32(k.symbol("SYMBOL(log_buf_len)"), "log_buf_len")
    if not hdr < buf_len <= P.LOG_BUF_LEN_MAX:
        raise BadInputError(f"log_buf_len={buf_len} outside {hdr + 1}..{P.LOG_BUF_LEN_MAX}")
    start_key = "SYMBOL(clear_idx)" if partial else "SYMBOL(log_first_idx)"
    first = mem.u32(k.symbol(start_key), start_key[7:-1])
    nxt = mem.u32(k.symbol("SYMBOL(log_next_idx)"), "log_next_idx")
    if first >= buf_len:
        raise BadInputError(f"{start_key[7:-1]}={first} not below log_buf_len={buf_len}")
    if nxt >= buf_len:
        raise BadInputError(f"log_next_idx={nxt} not below log_buf_len={buf_len}")

    out: list[LogRecord] = []
    idx, consumed, seq, steps = first, 0, 0, 0
    while idx != nxt:
        steps += 1
        if steps > max_records + 2:
            raise BadInputError(f"log_buf: more than {max_records} records between log_first_idx and log_next_idx")
        if idx + hdr > buf_len:
            # no room for even a header: the writer continued at the start
            consumed += buf_len - idx
            idx = 0
        else:
            h = mem.read(log_buf + idx, hdr, f"printk_log at log_buf+{idx}")
            ln = _u16(h, len_off)
            if ln == 0:
                if idx == 0:
                    raise BadInputError("printk_log.len=0 at log_buf+0: the wrap marker points at itself")
                consumed += buf_len - idx
                idx = 0
            else:
                text_len = _u16(h, tl_off)
                if ln < hdr or idx + ln > buf_len:
                    raise BadInputError(
                        f"printk_log.len={ln} at log_buf+{idx} (header {hdr}, log_buf_len {buf_len})"
                    )
                if text_len <= ln - hdr:
                    try:
                        text = mem.read(log_buf + idx + hdr, text_len, f"text at log_buf+{idx}")
                    except _SKIPPABLE:
                        text = None
                    if text is not None:
                        out.append(LogRecord(
                            seq=seq,
                            ts_nsec=_u64(h, ts_off),
                            level=P.unpack_flags_level(h[dl_off + 3])[1],
                            facility=h[dl_off + 2],
                            caller_id=_u32(h, caller_off) if caller_off is not None else 0,
                            text=_text(text),
                        ))
                seq += 1
                consumed += ln
                idx += ln
        if consumed > buf_len:
            raise BadInputError(
                f"log_buf: the records from log_first_idx do not lead to log_next_idx={nxt}"
            )
    return out


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

def _caller(caller_id: int) -> str:
    kind = "C" if caller_id & 0x80000000 else "T"
    return "[%6s]" % f"{kind}{caller_id & 0x7FFFFFFF}"


def format_dmesg(records: list[LogRecord], show_caller: bool = False) -> str:
    """The log as the kernel prints it: "[%5lu.%06lu] text", one prefix per text line.

    show_caller adds the CONFIG_PRINTK_CALLER field: "[    1.000000][    T1] text".
    """
    lines: list[str] = []
    for r in records:
        sec, nsec = divmod(r.ts_nsec, 1_000_000_000)
        prefix = "[%5d.%06d]" % (sec, nsec // 1000)
        if show_caller:
            prefix += _caller(r.caller_id)
        prefix += " "
        for line in r.text.split("\n"):
            lines.append(prefix + line)
    return "".join(line + "\n" for line in lines)
