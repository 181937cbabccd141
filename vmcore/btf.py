"""The kernel's own type information (BTF) from the dump: struct member offsets by name, with
no vmlinux and no debug info.

`Btf(blob)` indexes a .BTF blob (meminfo_abi/btf.py); the blob is untrusted input, so every
offset, length, count and type id is checked against what the blob holds, and reference
chains (typedef -> const -> ...) are followed a bounded number of steps.  A bad blob is one
BadInputError naming what is wrong.  `find_btf` locates the blob in a dump: between
__start_BTF and __stop_BTF when kallsyms has them (CONFIG_KALLSYMS_ALL), else by its header
in the kernel image's read-only data after _etext.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi import btf as abi

MAX_CHAIN = 64                  # typedef/const/volatile/... steps, nested arrays
MAX_MEMBER_VISITS = 1 << 16     # members one lookup may visit through anonymous structs
SCAN_LIMIT = 96 << 20           # how far past _etext the header is looked for
SCAN_CHUNK = 1 << 20

_HDR = {be: struct.Struct(abi.struct_format(abi.btf_header, be)) for be in (True, False)}
_TYPE = {be: struct.Struct(abi.struct_format(abi.btf_type, be)) for be in (True, False)}
_MEMBER = {be: struct.Struct(abi.struct_format(abi.btf_member, be)) for be in (True, False)}
_ARRAY = {be: struct.Struct(abi.struct_format(abi.btf_array, be)) for be in (True, False)}
_SKIP = {kind: (layout.sizeof(), many == "vlen") for kind, (layout, many) in abi.KIND_DATA.items()}
_QUALIFIERS = (abi.BTF_KIND_TYPEDEF, abi.BTF_KIND_VOLATILE, abi.BTF_KIND_CONST, abi.BTF_KIND_RESTRICT,
               abi.BTF_KIND_TYPE_TAG)


class NoBtfError(BadInputError):
    """The dumped kernel carries no BTF (or it is not in the dump)."""


@dataclass(frozen=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int          # 0: not a bitfield


@dataclass(frozen=True)
class Field:
    """Where a (dotted) member lies in a struct, and its type."""
    offset: int                 # bytes from the start of the outer struct
    type: int
    size: int


class Btf:
    def __init__(self, blob: bytes):
        if len(blob) < abi.BTF_HEADER_SIZE:
            raise BadInputError(f"BTF: {len(blob)} bytes, shorter than struct btf_header")
        if len(blob) > abi.BTF_MAX_BLOB:
            raise BadInputError(f"BTF: {len(blob)} bytes, more than the {abi.BTF_MAX_BLOB >> 20} MiB bound")
        magic_be = struct.unpack_from(">H", blob)[0]
        if magic_be == abi.BTF_MAGIC:
            self.big_endian = True
        elif magic_be == ((abi.BTF_MAGIC & 0xFF) << 8 | abi.BTF_MAGIC >> 8):
            self.big_endian = False
        else:
            raise BadInputError(f"BTF: magic 0x{magic_be:04x} is not 0x{abi.BTF_MAGIC:04x}")
        be = self.big_endian
        _m, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR[be].unpack_from(blob)
        if version != abi.BTF_VERSION:
            raise BadInputError(f"BTF: version {version}, not {abi.BTF_VERSION}")
        if not abi.BTF_HEADER_SIZE <= hdr_len <= len(blob):
            raise BadInputError(f"BTF: header length {hdr_len} outside {abi.BTF_HEADER_SIZE}..{len(blob)} "
                                "(the blob's size)")
        body = len(blob) - hdr_len
        for what, off, n in (("type", type_off, type_len), ("string", str_off, str_len)):
            if off > body or n > body - off:
                raise BadInputError(f"BTF: {what} section {off}+{n} runs past the blob's {body} bytes "
                                    "after the header")
        if type_off % 4:
            raise BadInputError(f"BTF: type section offset {type_off} is not 4-byte aligned")
        self.blob = blob
        self.strings = blob[hdr_len + str_off:hdr_len + str_off + str_len]
        if str_len and self.strings[:1] != b"\0":
            raise BadInputError("BTF: the string section does not start with an empty string")
        self._types = hdr_len + type_off
        self._types_end = self._types + type_len
        self._fmt = (_TYPE[be], _MEMBER[be], _ARRAY[be])
        self._index()

    # -- the type section ----------------------------------------------------------------------
    def _index(self) -> None:
        """One pass: where each record starts, its kind, vlen, name and size/type."""
        tfmt = self._fmt[0]
        blob, pos, end = self.blob, self._types, self._types_end
        offs, kinds, vlens, names, sizes, kflags = [0], [0], [0], [0], [0], [False]
        while pos < end:
            if end - pos < abi.BTF_TYPE_SIZE:
                raise BadInputError(f"BTF: type {len(offs)} at type-section offset {pos - self._types} is cut "
                                    f"short ({end - pos} of {abi.BTF_TYPE_SIZE} bytes)")
            name_off, info, size_type = tfmt.unpack_from(blob, pos)
            kind = (info >> abi.BTF_INFO_KIND_SHIFT) & abi.BTF_INFO_KIND_MASK
            vlen = info & abi.BTF_INFO_VLEN_MASK
            if kind > abi.BTF_KIND_ENUM64 or kind == abi.BTF_KIND_UNKN:
                raise BadInputError(f"BTF: type {len(offs)} has unknown kind {kind}")
            rec, per_vlen = _SKIP.get(kind, (0, False))
            extra = rec * vlen if per_vlen else rec
            if extra > end - pos - abi.BTF_TYPE_SIZE:
                raise BadInputError(f"BTF: type {len(offs)} ({abi.KIND_NAMES[kind]}, vlen {vlen}) runs past the "
                                    "type section")
            if name_off >= max(len(self.strings), 1) and name_off:
                raise BadInputError(f"BTF: type {len(offs)} name offset {name_off} is past the string section "
                                    f"({len(self.strings)} bytes)")
            offs.append(pos)
            kinds.append(kind)
            vlens.append(vlen)
            names.append(name_off)
            sizes.append(size_type)
            kflags.append(bool(info & abi.BTF_INFO_KFLAG))
            pos += abi.BTF_TYPE_SIZE + extra
        self._offs, self._kinds, self._vlens, self._names, self._sizes, self._kflags = (
            offs, kinds, vlens, names, sizes, kflags)
        self._by_name: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        """Number of types, void (id 0) included."""
        return len(self._offs)

    def string(self, off: int) -> str:
        if off == 0:
            return ""
        if off >= len(self.strings):
            raise BadInputError(f"BTF: name offset {off} is past the string section ({len(self.strings)} bytes)")
        end = self.strings.find(b"\0", off)
        return self.strings[off:end if end >= 0 else len(self.strings)].decode("latin-1")

    def _check(self, tid: int) -> int:
        if not 0 <= tid < len(self._offs):
            raise BadInputError(f"BTF: type id {tid} is not among the blob's {len(self._offs) - 1} types")
        return tid

    def kind(self, tid: int) -> int:
        return self._kinds[self._check(tid)]

    def kind_name(self, tid: int) -> str:
        return abi.KIND_NAMES[self.kind(tid)]

    def name(self, tid: int) -> str:
        return self.string(self._names[self._check(tid)])

    def find(self, name: str, kinds: tuple[int, ...] = (abi.BTF_KIND_STRUCT, abi.BTF_KIND_UNION)) -> int | None:
        """The first type of that name and one of these kinds (a full definition, never a fwd)."""
        if self._by_name is None:
            idx: dict[str, list[int]] = {}
            for tid in range(1, len(self._offs)):
                if self._names[tid]:
                    idx.setdefault(self.string(self._names[tid]), []).append(tid)
            self._by_name = idx
        for tid in self._by_name.get(name, ()):
            if self._kinds[tid] in kinds:
                return tid
        return None

    def resolve(self, tid: int) -> int:
        """Through typedef, const, volatile, restrict and type tags to the type itself."""
        for _ in range(MAX_CHAIN):
            if self.kind(tid) not in _QUALIFIERS:
                return tid
            tid = self._sizes[tid]
        raise BadInputError(f"BTF: more than {MAX_CHAIN} typedef/qualifier steps from type {tid} (a loop?)")

    def members(self, tid: int) -> list[Member]:
        tid = self.resolve(tid)
        if self._kinds[tid] not in (abi.BTF_KIND_STRUCT, abi.BTF_KIND_UNION):
            raise BadInputError(f"BTF: type {tid} ({self.kind_name(tid)} {self.name(tid)!r}) is not a struct or union")
        mfmt = self._fmt[1]
        out = []
        base = self._offs[tid] + abi.BTF_TYPE_SIZE
        for i in range(self._vlens[tid]):
            name_off, mtype, off = mfmt.unpack_from(self.blob, base + i * abi.btf_member.sizeof())
            if self._kflags[tid]:
                bits, off = off >> abi.BTF_MEMBER_BITFIELD_SHIFT, off & abi.BTF_MEMBER_OFFSET_MASK
            else:
                bits = 0
            out.append(Member(self.string(name_off), self._check(mtype), off, bits))
        return out

    def array(self, tid: int) -> tuple[int, int]:
        """(element type, number of elements) of an array type."""
        tid = self.resolve(tid)
        if self._kinds[tid] != abi.BTF_KIND_ARRAY:
            raise BadInputError(f"BTF: type {tid} ({self.kind_name(tid)}) is not an array")
        elem, _index, n = self._fmt[2].unpack_from(self.blob, self._offs[tid] + abi.BTF_TYPE_SIZE)
        return self._check(elem), n

    def sizeof(self, tid: int, _depth: int = 0) -> int:
        if _depth > MAX_CHAIN:
            raise BadInputError(f"BTF: arrays nested more than {MAX_CHAIN} deep at type {tid}")
        tid = self.resolve(tid)
        kind = self._kinds[tid]
        if kind in (abi.BTF_KIND_INT, abi.BTF_KIND_STRUCT, abi.BTF_KIND_UNION, abi.BTF_KIND_ENUM,
                    abi.BTF_KIND_ENUM64, abi.BTF_KIND_FLOAT, abi.BTF_KIND_DATASEC):
            return self._sizes[tid]
        if kind == abi.BTF_KIND_PTR:
            return 8
        if kind == abi.BTF_KIND_ARRAY:
            elem, n = self.array(tid)
            return n * self.sizeof(elem, _depth + 1)
        raise BadInputError(f"BTF: type {tid} ({abi.KIND_NAMES[kind]} {self.name(tid)!r}) has no size")

    def member(self, tid: int, name: str) -> Field | None:
        """One member by name, looking into anonymous struct/union members as C does."""
        return self._member(tid, name, [MAX_MEMBER_VISITS], ())

    def _member(self, tid: int, name: str, budget: list[int], path: tuple[int, ...]) -> Field | None:
        tid = self.resolve(tid)
        if tid in path or len(path) > MAX_CHAIN:
            raise BadInputError(f"BTF: struct {tid} contains itself through anonymous members")
        for m in self.members(tid):
            budget[0] -= 1
            if budget[0] < 0:
                raise BadInputError(f"BTF: looking up {name!r} visits more than {MAX_MEMBER_VISITS} members "
                                    "of anonymous structs")
            if m.name == name:
                if m.bitfield_size:
                    raise BadInputError(f"BTF: member {name!r} is a bitfield")
                return Field(m.bit_offset // 8, m.type, self.sizeof(m.type))
            if not m.name and self.kind(self.resolve(m.type)) in (abi.BTF_KIND_STRUCT, abi.BTF_KIND_UNION):
                inner = self._member(m.type, name, budget, path + (tid,))
                if inner is not None:
                    return Field(m.bit_offset // 8 + inner.offset, inner.type, inner.size)
        return None

    def named(self, name: str) -> int | None:
        """A struct or union by name, else a typedef of that name (atomic_long_t, nodemask_t)."""
        tid = self.find(name)
        return tid if tid is not None else self.find(name, (abi.BTF_KIND_TYPEDEF,))

    def field(self, struct_name: str, path: str) -> Field | None:
        """A dotted member path ("thread.ksp") of a named struct; None where a step is missing."""
        tid = self.named(struct_name)
        if tid is None:
            return None
        offset, cur = 0, tid
        f = None
        for step in path.split("."):
            if self.kind(self.resolve(cur)) not in (abi.BTF_KIND_STRUCT, abi.BTF_KIND_UNION):
                return None
            f = self.member(cur, step)
            if f is None:
                return None
            offset += f.offset
            cur = f.type
        return Field(offset, f.type, f.size)

    def struct_size(self, name: str) -> int | None:
        tid = self.named(name)
        return None if tid is None else self.sizeof(tid)


def header_at(data: bytes, pos: int) -> int | None:
    """The blob length a plausible big-endian BTF header at data[pos:] announces, else None."""
    if len(data) - pos < abi.BTF_HEADER_SIZE:
        return None
    _m, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR[True].unpack_from(data, pos)
    if (_m != abi.BTF_MAGIC or version != abi.BTF_VERSION or flags or hdr_len != abi.BTF_HEADER_SIZE
            or type_off % 4 or not type_len or not str_len):
        return None
    total = hdr_len + max(type_off + type_len, str_off + str_len)
    return total if total <= abi.BTF_MAX_BLOB else None


def _read_mapped(read_virt, addr: int, n: int) -> bytes:
    """Up to n bytes at addr: whole, or page by page up to the first page not in the dump."""
    try:
        return read_virt(addr, n)
    except DumpToolError:
        pass
    out = []
    pos = addr
    while pos < addr + n:
        step = min(addr + n, (pos | 0xFFF) + 1) - pos
        try:
            out.append(read_virt(pos, step))
        except DumpToolError:
            break
        pos += step
    return b"".join(out)


def find_btf(read_virt, syms) -> tuple[int, Btf, str]:
    """(address, parsed blob, how it was found) of the kernel's .BTF, or NoBtfError saying so in one
    line.  read_virt(addr, n) reads kernel virtual memory; syms is the kallsyms table."""
    start, stop = syms.by_name("__start_BTF"), syms.by_name("__stop_BTF")
    if start is not None and stop is not None:
        n = stop.address - start.address
        if not abi.BTF_HEADER_SIZE <= n <= abi.BTF_MAX_BLOB:
            raise NoBtfError(f"the kernel's .BTF (__start_BTF..__stop_BTF) is {n} bytes: no usable BTF")
        try:
            blob = read_virt(start.address, n)
        except DumpToolError as exc:
            raise NoBtfError(f"the kernel's .BTF at 0x{start.address:x} is not in the dump: {exc}") from None
        return start.address, Btf(blob), "__start_BTF"
    etext = syms.by_name("_etext")
    if etext is None:
        raise NoBtfError("the dump's kallsyms has neither __start_BTF nor _etext: cannot find the kernel's BTF")
    magic = struct.pack(">HBB", abi.BTF_MAGIC, abi.BTF_VERSION, 0)
    base = etext.address & ~0xFFF
    pos = 0
    bad = ""
    while pos < SCAN_LIMIT:
        chunk = _read_mapped(read_virt, base + pos, SCAN_CHUNK + abi.BTF_HEADER_SIZE)
        i = chunk.find(magic)
        while 0 <= i < min(len(chunk), SCAN_CHUNK):
            n = header_at(chunk, i) if i % 4 == 0 else None
            if n is not None:
                addr = base + pos + i
                try:
                    return addr, Btf(read_virt(addr, n)), "scan"
                except DumpToolError as exc:
                    bad = bad or f"; the BTF header at 0x{addr:x} leads to a bad blob: {exc}"
            i = chunk.find(magic, i + 1)
        if len(chunk) < SCAN_CHUNK + abi.BTF_HEADER_SIZE:
            pos += len(chunk)
            break
        pos += SCAN_CHUNK
    raise NoBtfError("the dumped kernel carries no usable BTF (no __start_BTF in kallsyms, no BTF header in the "
                     f"{pos / (1 << 20):.0f} MiB after _etext{bad}): ps and bt --task need "
                     "CONFIG_DEBUG_INFO_BTF=y")
