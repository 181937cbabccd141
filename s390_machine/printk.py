"""Lay a kernel printk log into the simulated machine's memory.

Both builders only get a ``write(phys_addr, data)`` callable and a physical region
[base, base + size); they place every kernel object the log consists of inside that
region, store records the way the kernel's writer would (including overwriting the
oldest ones when the log is full) and return the VMCOREINFO keys describing it
(``SYMBOL`` values are virtual addresses = physical + virt_offset, hex without 0x;
``SIZE``/``OFFSET``/``LENGTH`` decimal).

Region layout, ring buffer (>= 5.10):
    +0    prb                 struct printk_ringbuffer *  -> printk_rb_static
    +8    clear_seq           struct latched_seq
    +32   printk_rb_static    struct printk_ringbuffer
    +120  descs[count]        struct prb_desc
          infos[count]        struct printk_info
          data[1 << size_bits]  (8-byte aligned)
Region layout, legacy (3.5 .. 5.9):
    +0    log_buf             char *  -> the buffer
    +8    log_buf_len         u32
    +12   log_first_idx       u32
    +16   log_next_idx        u32
    +20   clear_idx           u32
    +24   the buffer          log_buf_len bytes (8-byte aligned)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from meminfo_abi import printk as P

Write = Callable[[int, bytes], Any]

DEFAULT_LEVEL = 4           # default_message_loglevel


@dataclass
class PrintkRecord:
    """One message as printk() would store it (text without the trailing newline)."""

    text: bytes | str
    ts_nsec: int = 0
    level: int = DEFAULT_LEVEL
    facility: int = 0
    caller_id: int = 0          # task pid, or 0x80000000 | cpu for non-task context
    flags: int = P.LOG_NEWLINE
    subsystem: bytes | str = b""    # dev_printk_info (ring buffer) / dict SUBSYSTEM= (legacy)
    device: bytes | str = b""
    dict: bytes | str = b""         # legacy only: the raw dictionary


def _as_bytes(v: Any) -> bytes:
    if v is None:
        return b""
    if isinstance(v, str):
        return v.encode("utf-8")
    return bytes(v)


def _get(rec: Any, name: str, default: Any) -> Any:
    if isinstance(rec, dict):
        return rec.get(name, default)
    return getattr(rec, name, default)


def _normalize(rec: Any) -> PrintkRecord:
    if isinstance(rec, PrintkRecord):
        return rec
    if not isinstance(rec, dict) and not hasattr(rec, "text"):
        raise TypeError(f"a printk record needs a text: {rec!r}")
    return PrintkRecord(
        text=_get(rec, "text", b""),
        ts_nsec=int(_get(rec, "ts_nsec", 0)),
        level=int(_get(rec, "level", DEFAULT_LEVEL)),
        facility=int(_get(rec, "facility", 0)),
        caller_id=int(_get(rec, "caller_id", 0)),
        flags=int(_get(rec, "flags", P.LOG_NEWLINE)),
        subsystem=_get(rec, "subsystem", b""),
        device=_get(rec, "device", b""),
        dict=_get(rec, "dict", b""),
    )


def _align(v: int, a: int) -> int:
    return (v + a - 1) & ~(a - 1)


def _sym(v: int) -> str:
    return format(v & P.U64_MASK, "x")


# ---------------------------------------------------------------------------------------------
# A. the lockless ring buffer
# ---------------------------------------------------------------------------------------------

_RB_PRB_OFF = 0
_RB_CLEAR_SEQ_OFF = 8
_RB_STATIC_OFF = _RB_CLEAR_SEQ_OFF + P.SIZEOF_LATCHED_SEQ            # 32
_RB_DESCS_OFF = _RB_STATIC_OFF + P.SIZEOF_PRINTK_RINGBUFFER          # 120


def _ring_layout(count_bits: int, size_bits: int) -> tuple[int, int, int]:
    """(infos offset, data offset, total bytes) inside the 8-aligned region."""
    infos = _RB_DESCS_OFF + P.descs_count(count_bits) * P.SIZEOF_PRB_DESC
    data = _align(infos + P.descs_count(count_bits) * P.SIZEOF_PRINTK_INFO, 8)
    return infos, data, data + P.data_size(size_bits)


def _choose_ring_bits(usable: int, count_bits: int | None, size_bits: int | None) -> tuple[int, int]:
    if count_bits is None and size_bits is None:
        for sb in range(P.CONFIG_LOG_BUF_SHIFT_DEFAULT, 6, -1):
            cb = max(2, sb - P.PRB_AVGBITS)
            if _ring_layout(cb, sb)[2] <= usable:
                return cb, sb
        return 2, 7         # does not fit; reported by the caller
    if size_bits is None:
        size_bits = count_bits + P.PRB_AVGBITS
    if count_bits is None:
        count_bits = max(2, size_bits - P.PRB_AVGBITS)
    return count_bits, size_bits


class _RingWriter:
    """The kernel's single-writer path through prb_reserve()/prb_final_commit(), unraced.

    Ids and lpos are tracked as unbounded Python ints (congruent to the kernel's values
    modulo 2**62 / 2**64) and masked when stored.
    """

    def __init__(self, count_bits: int, size_bits: int):
        self.cb, self.sb = count_bits, size_bits
        self.count = P.descs_count(count_bits)
        self.size = P.data_size(size_bits)
        self.data = bytearray(self.size)
        # per slot: [id, state, begin, next]; per slot info fields
        self.desc: dict[int, list[int]] = {}
        self.info: dict[int, dict[str, Any]] = {}
        d0 = P.desc0_id(count_bits)
        self.head_id = self.tail_id = d0
        self.head_lpos = self.tail_lpos = P.blk0_lpos(size_bits)
        # the bootstrap descriptor: last slot, reusable, no data
        self.desc[self.count - 1] = [d0, P.desc_state.desc_reusable, P.FAILED_LPOS, P.FAILED_LPOS]
        self.info[self.count - 1] = {"seq": 0}
        self.info[0] = {"seq": -self.count}      # becomes 0 on the first reservation
        self.block_owner: dict[int, int] = {}    # begin lpos -> id, for blocks still in the ring

    # --- tail handling ----------------------------------------------------------------------
    def _data_push_tail(self, lpos: int) -> None:
        """Invalidate data blocks until the data tail is at or beyond lpos."""
        while self.tail_lpos < lpos:
            owner = self.block_owner.pop(self.tail_lpos)
            d = self.desc[owner & (self.count - 1)]
            assert d[0] == owner and d[2] == self.tail_lpos
            d[1] = P.desc_state.desc_reusable
            self.tail_lpos = d[3]

    def _desc_push_tail(self) -> None:
        d = self.desc[self.tail_id & (self.count - 1)]
        if d[1] == P.desc_state.desc_finalized:
            if not P.lpos_dataless(d[3]):
                self._data_push_tail(d[3])
            d[1] = P.desc_state.desc_reusable
        self.tail_id += 1

    # --- one record -------------------------------------------------------------------------
    def store(self, rec: PrintkRecord) -> None:
        text = _as_bytes(rec.text)[: min(0xFFFF, P.max_text_size(self.sb))]
        new_id = self.head_id + 1
        if new_id - self.count == self.tail_id:
            self._desc_push_tail()
        slot = new_id & (self.count - 1)
        old_seq = self.info.get(slot, {}).get("seq", 0)
        seq = slot if (old_seq == 0 and slot != 0) else old_seq + self.count

        if not text:
            begin = nxt = P.NO_LPOS
        else:
            blk = P.to_blk_size(len(text))
            begin = self.head_lpos
            nxt = P.get_next_lpos(self.sb, begin, blk)
            self._data_push_tail(nxt - self.size)
            idword = struct.pack(">Q", new_id & P.DESC_ID_MASK)
            bi = P.data_index(self.sb, begin)
            self.data[bi:bi + 8] = idword
            if (begin >> self.sb) != (nxt >> self.sb):
                # wrapping block: text (and a copy of the id) at index 0
                self.data[0:8] = idword
                ti = 8
            else:
                ti = bi + 8
            self.data[ti:ti + len(text)] = text
            self.block_owner[begin] = new_id
            self.head_lpos = nxt

        self.desc[slot] = [new_id, P.desc_state.desc_finalized, begin, nxt]
        self.info[slot] = {
            "seq": seq,
            "ts_nsec": rec.ts_nsec,
            "text_len": len(text),
            "facility": rec.facility,
            "flags": rec.flags,
            "level": rec.level,
            "caller_id": rec.caller_id,
            "subsystem": _as_bytes(rec.subsystem)[: P.PRINTK_INFO_SUBSYSTEM_LEN - 1],
            "device": _as_bytes(rec.device)[: P.PRINTK_INFO_DEVICE_LEN - 1],
        }
        self.head_id = new_id

    # --- serialization ----------------------------------------------------------------------
    def descs_bytes(self) -> bytes:
        out = bytearray(self.count * P.SIZEOF_PRB_DESC)
        for slot, (id_, state, begin, nxt) in self.desc.items():
            out[slot * P.SIZEOF_PRB_DESC:(slot + 1) * P.SIZEOF_PRB_DESC] = P.prb_desc.build({
                "state_var": {"counter": P.desc_sv(id_, state)},
                "text_blk_lpos": {"begin": begin & P.U64_MASK, "next": nxt & P.U64_MASK},
            })
        return bytes(out)

    def infos_bytes(self) -> bytes:
        out = bytearray(self.count * P.SIZEOF_PRINTK_INFO)
        for slot, inf in self.info.items():
            out[slot * P.SIZEOF_PRINTK_INFO:(slot + 1) * P.SIZEOF_PRINTK_INFO] = P.printk_info.build({
                "seq": inf["seq"] & P.U64_MASK,
                "ts_nsec": inf.get("ts_nsec", 0) & P.U64_MASK,
                "text_len": inf.get("text_len", 0),
                "facility": inf.get("facility", 0) & 0xFF,
                "flags_level": {"flags": inf.get("flags", 0) & 0x1F, "level": inf.get("level", 0) & 7},
                "caller_id": inf.get("caller_id", 0) & 0xFFFFFFFF,
                "dev_info": {
                    "subsystem": inf.get("subsystem", b"").ljust(P.PRINTK_INFO_SUBSYSTEM_LEN, b"\0"),
                    "device": inf.get("device", b"").ljust(P.PRINTK_INFO_DEVICE_LEN, b"\0"),
                },
            })
        return bytes(out)


def build_ringbuffer(
    write: Write,
    base: int,
    size: int,
    records: Iterable[Any],
    *,
    count_bits: int | None = None,
    size_bits: int | None = None,
    virt_offset: int = 0,
    clear_seq: int = 0,
) -> dict[str, str]:
    """Store a printk ring buffer (Linux >= 5.10 layout, 6.1 sizes) in [base, base+size).

    records: PrintkRecord, dicts or objects with text, ts_nsec, level, facility,
    caller_id (and optionally flags, subsystem, device).  They get seq 0, 1, 2...
    When more records come than descriptors (1 << count_bits) or data ring bytes
    (1 << size_bits) hold, the oldest are overwritten as the kernel does.  A text
    longer than half the data ring is cut (the kernel limits records the same way).

    Without count_bits/size_bits the kernel defaults (CONFIG_LOG_BUF_SHIFT=17,
    count_bits = size_bits - 5) are used, shrunk until everything fits the region.
    clear_seq is the value of the clear_seq latch (records below it were "dmesg -c"ed).
    Returns the vmcoreinfo keys.  Raises ValueError if the region is too small.
    """
    if base < 0 or size <= 0:
        raise ValueError("build_ringbuffer: empty or negative region")
    start = _align(base, 8)
    usable = size - (start - base)
    cb, sb = _choose_ring_bits(usable, count_bits, size_bits)
    if not 2 <= cb <= 30:
        raise ValueError(f"count_bits {cb} outside 2..30")
    if not 7 <= sb <= 32:
        raise ValueError(f"size_bits {sb} outside 7..32")
    infos_off, data_off, total = _ring_layout(cb, sb)
    if total > usable:
        raise ValueError(
            f"printk ring buffer with count_bits={cb}, size_bits={sb} needs {total} bytes, "
            f"region has {usable}"
        )

    w = _RingWriter(cb, sb)
    for rec in records:
        w.store(_normalize(rec))

    def va(off: int) -> int:
        return (start + off + virt_offset) & P.U64_MASK

    rb = P.printk_ringbuffer.build({
        "desc_ring": {
            "count_bits": cb,
            "descs": va(_RB_DESCS_OFF),
            "infos": va(infos_off),
            "head_id": {"counter": w.head_id & P.DESC_ID_MASK},
            "tail_id": {"counter": w.tail_id & P.DESC_ID_MASK},
            "last_finalized_id": {"counter": w.head_id & P.DESC_ID_MASK},
        },
        "text_data_ring": {
            "size_bits": sb,
            "data": va(data_off),
            "head_lpos": {"counter": w.head_lpos & P.U64_MASK},
            "tail_lpos": {"counter": w.tail_lpos & P.U64_MASK},
        },
        "fail": {"counter": 0},
    })
    latch = P.latched_seq.build({"latch": {"sequence": 0}, "val": [clear_seq & P.U64_MASK] * 2})

    write(start + _RB_PRB_OFF, struct.pack(">Q", va(_RB_STATIC_OFF)))
    write(start + _RB_CLEAR_SEQ_OFF, latch)
    write(start + _RB_STATIC_OFF, rb)
    write(start + _RB_DESCS_OFF, w.descs_bytes())
    write(start + infos_off, w.infos_bytes())
    write(start + data_off, bytes(w.data))

    keys = {
        "SYMBOL(prb)": _sym(va(_RB_PRB_OFF)),
        "SYMBOL(printk_rb_static)": _sym(va(_RB_STATIC_OFF)),
        "SYMBOL(clear_seq)": _sym(va(_RB_CLEAR_SEQ_OFF)),
    }
    keys.update(P.ringbuffer_vmcoreinfo_layout())
    return keys


# ---------------------------------------------------------------------------------------------
# B. the legacy log_buf
# ---------------------------------------------------------------------------------------------

_LB_PTR_OFF = 0
_LB_LEN_OFF = 8
_LB_FIRST_OFF = 12
_LB_NEXT_OFF = 16
_LB_CLEAR_OFF = 20
_LB_BUF_OFF = 24


class _LegacyWriter:
    """log_store() of 3.5 .. 5.9: drop the oldest until the message fits contiguously."""

    def __init__(self, length: int):
        self.buf = bytearray(length)
        self.len = length
        self.first_idx = self.next_idx = 0
        self.first_seq = self.next_seq = 0
        self.clear_seq = 0
        self.clear_idx = 0

    def _rec_len(self, idx: int) -> int:
        return struct.unpack_from(">H", self.buf, idx + 8)[0]

    def _log_next(self, idx: int) -> int:
        ln = self._rec_len(idx)
        if ln == 0:                     # wrap marker: the record is at the start
            return self._rec_len(0)
        return idx + ln

    def _has_space(self, msg_size: int, empty: bool) -> bool:
        if self.next_idx > self.first_idx or empty:
            free = max(self.len - self.next_idx, self.first_idx)
        else:
            free = self.first_idx - self.next_idx
        # room is also needed for the zero header that marks a wrap
        return free >= msg_size + P.SIZEOF_PRINTK_LOG

    def _make_free_space(self, msg_size: int) -> bool:
        while self.first_seq < self.next_seq and not self._has_space(msg_size, False):
            self.first_idx = self._log_next(self.first_idx)
            self.first_seq += 1
        if self.clear_seq < self.first_seq:
            self.clear_seq = self.first_seq
            self.clear_idx = self.first_idx
        return self._has_space(msg_size, self.first_seq == self.next_seq)

    def store(self, rec: PrintkRecord) -> None:
        text = _as_bytes(rec.text)[:0xFFFF]
        dic = _as_bytes(rec.dict)
        if not dic and (rec.subsystem or rec.device):
            parts = []
            if rec.subsystem:
                parts.append(b"SUBSYSTEM=" + _as_bytes(rec.subsystem))
            if rec.device:
                parts.append(b"DEVICE=" + _as_bytes(rec.device))
            dic = b"\0".join(parts)
        dic = dic[:0xFFFF]
        size, pad = P.msg_used_size(len(text), len(dic))
        if size > 0xFFFF or not self._make_free_space(size):
            keep = min(self.len // P.MAX_LOG_TAKE_PART, 0xFFFF - P.SIZEOF_PRINTK_LOG - len(P.TRUNC_MSG) - 7)
            text = text[:keep] + P.TRUNC_MSG
            dic = b""
            size, pad = P.msg_used_size(len(text), 0)
            if not self._make_free_space(size):
                return                  # the kernel drops it, too
        if self.next_idx + size + P.SIZEOF_PRINTK_LOG > self.len:
            self.buf[self.next_idx:self.next_idx + P.SIZEOF_PRINTK_LOG] = bytes(P.SIZEOF_PRINTK_LOG)
            self.next_idx = 0
        hdr = P.printk_log.build({
            "ts_nsec": rec.ts_nsec & P.U64_MASK,
            "len": size,
            "text_len": len(text),
            "dict_len": len(dic),
            "facility": rec.facility & 0xFF,
            "flags_level": {"flags": rec.flags & 0x1F, "level": rec.level & 7},
        })
        i = self.next_idx
        self.buf[i:i + size] = hdr + text + dic + bytes(pad)
        self.next_idx += size
        self.next_seq += 1


def build_legacy_logbuf(
    write: Write,
    base: int,
    size: int,
    records: Iterable[Any],
    *,
    log_buf_len: int | None = None,
    virt_offset: int = 0,
) -> dict[str, str]:
    """Store a legacy (3.5 .. 5.9) log_buf with its index variables in [base, base+size).

    log_buf_len must be a multiple of 8 (the kernel uses powers of two); by default
    1 << 17, halved until it fits the region.  Full buffers drop their oldest records;
    a record that cannot fit even an empty buffer is cut to log_buf_len/4 plus
    "<truncated>", as log_store() does.  Returns the vmcoreinfo keys.
    """
    if base < 0 or size <= 0:
        raise ValueError("build_legacy_logbuf: empty or negative region")
    start = _align(base, 8)
    usable = size - (start - base) - _LB_BUF_OFF
    if log_buf_len is None:
        log_buf_len = 1 << P.CONFIG_LOG_BUF_SHIFT_DEFAULT
        while log_buf_len > 64 and log_buf_len > usable:
            log_buf_len >>= 1
    if log_buf_len < 4 * P.SIZEOF_PRINTK_LOG or log_buf_len % P.LOG_ALIGN or log_buf_len > P.LOG_BUF_LEN_MAX:
        raise ValueError(f"log_buf_len {log_buf_len} must be a multiple of 8 in 64..2**31")
    if log_buf_len > usable:
        raise ValueError(f"log_buf of {log_buf_len} bytes plus its variables does not fit {size} bytes")

    w = _LegacyWriter(log_buf_len)
    for rec in records:
        w.store(_normalize(rec))

    def va(off: int) -> int:
        return (start + off + virt_offset) & P.U64_MASK

    write(start + _LB_PTR_OFF, struct.pack(">Q", va(_LB_BUF_OFF)))
    write(start + _LB_LEN_OFF, struct.pack(">IIII", log_buf_len, w.first_idx, w.next_idx, w.clear_idx))
    write(start + _LB_BUF_OFF, bytes(w.buf))

    keys = {
        "SYMBOL(log_buf)": _sym(va(_LB_PTR_OFF)),
        "SYMBOL(log_buf_len)": _sym(va(_LB_LEN_OFF)),
        "SYMBOL(log_first_idx)": _sym(va(_LB_FIRST_OFF)),
        "SYMBOL(clear_idx)": _sym(va(_LB_CLEAR_OFF)),
        "SYMBOL(log_next_idx)": _sym(va(_LB_NEXT_OFF)),
    }
    keys.update(P.legacy_vmcoreinfo_layout())
    return keys
