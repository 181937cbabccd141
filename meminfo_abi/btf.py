"""The BPF Type Format (BTF) as a kernel built with CONFIG_DEBUG_INFO_BTF carries it in its .BTF
section, between the linker symbols __start_BTF and __stop_BTF (include/uapi/linux/btf.h;
described in the kernel's Documentation/bpf/btf.rst).

A blob is a struct btf_header, then (at offsets relative to the header's end) the type section
and the string section.  The type section is a run of records, each a struct btf_type followed
by data whose shape its kind decides (a member list for a struct, an array descriptor, ...);
records are numbered from 1 in order (type id 0 is void).  Names are offsets into the string
section (0: anonymous).  Every field is in the byte order of the target: big-endian on s390x,
which the magic tells (0xEB9F read in the blob's own order).
"""

from __future__ import annotations

from construct import Int8ub, Int16ub, Int32sb, Int32ub, Struct

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1

# struct btf_header
btf_header = Struct(
    "magic" / Int16ub,
    "version" / Int8ub,
    "flags" / Int8ub,
    "hdr_len" / Int32ub,        # the header's own length: later versions may grow it
    "type_off" / Int32ub,       # offsets and lengths from the end of the header
    "type_len" / Int32ub,
    "str_off" / Int32ub,
    "str_len" / Int32ub,
)

# struct btf_type: name, info (vlen bits 0-15, kind bits 24-28, kind_flag bit 31), size or type
btf_type = Struct(
    "name_off" / Int32ub,
    "info" / Int32ub,
    "size_type" / Int32ub,      # union { size; type; }: a byte size or a referenced type id
)
BTF_INFO_VLEN_MASK = 0xFFFF
BTF_INFO_KIND_SHIFT = 24
BTF_INFO_KIND_MASK = 0x1F
BTF_INFO_KFLAG = 1 << 31

# the kinds (BTF_KIND_*)
BTF_KIND_UNKN = 0
BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_FWD = 7
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_FLOAT = 16
BTF_KIND_DECL_TAG = 17
BTF_KIND_TYPE_TAG = 18
BTF_KIND_ENUM64 = 19
KIND_NAMES = ("unknown", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef", "volatile",
              "const", "restrict", "func", "func_proto", "var", "datasec", "float", "decl_tag", "type_tag",
              "enum64")

# the data after a struct btf_type, by kind
btf_int = Struct("encoding" / Int32ub)          # bits 24-27 encoding, 16-23 bit offset, 0-7 bits
BTF_INT_BITS_MASK = 0xFF
btf_array = Struct(
    "type" / Int32ub,           # element type
    "index_type" / Int32ub,
    "nelems" / Int32ub,
)
btf_member = Struct(
    "name_off" / Int32ub,
    "type" / Int32ub,
    "offset" / Int32ub,         # bit offset; with kind_flag: bits 0-23 bit offset, 24-31 bitfield size
)
BTF_MEMBER_BITFIELD_SHIFT = 24
BTF_MEMBER_OFFSET_MASK = 0xFFFFFF
btf_enum = Struct("name_off" / Int32ub, "val" / Int32sb)
btf_param = Struct("name_off" / Int32ub, "type" / Int32ub)
btf_var = Struct("linkage" / Int32ub)
btf_var_secinfo = Struct("type" / Int32ub, "offset" / Int32ub, "size" / Int32ub)
btf_decl_tag = Struct("component_idx" / Int32sb)
btf_enum64 = Struct("name_off" / Int32ub, "val_lo32" / Int32ub, "val_hi32" / Int32ub)

# kind -> (record layout, how many: "one" or "vlen") of the data after struct btf_type
KIND_DATA = {
    BTF_KIND_INT: (btf_int, "one"),
    BTF_KIND_ARRAY: (btf_array, "one"),
    BTF_KIND_STRUCT: (btf_member, "vlen"),
    BTF_KIND_UNION: (btf_member, "vlen"),
    BTF_KIND_ENUM: (btf_enum, "vlen"),
    BTF_KIND_FUNC_PROTO: (btf_param, "vlen"),
    BTF_KIND_VAR: (btf_var, "one"),
    BTF_KIND_DATASEC: (btf_var_secinfo, "vlen"),
    BTF_KIND_DECL_TAG: (btf_decl_tag, "one"),
    BTF_KIND_ENUM64: (btf_enum64, "vlen"),
}

BTF_HEADER_SIZE = 24
BTF_TYPE_SIZE = 12
BTF_MAX_BLOB = 256 << 20        # bound on an untrusted blob (vmlinux BTF is some 5 MiB)


def struct_format(layout: Struct, big_endian: bool = True) -> str:
    """The `struct` module format of a layout made only of fixed-size integers, in either byte
    order: the bulk decoding of thousands of records reads the same declaration."""
    codes = []
    for sc in layout.subcons:
        fmt = getattr(sc.subcon, "fmtstr", None)
        if fmt is None:
            raise TypeError(f"field {sc.name} of the layout is not a fixed-size integer")
        codes.append(fmt[1:])
    return (">" if big_endian else "<") + "".join(codes)


assert btf_header.sizeof() == BTF_HEADER_SIZE
assert btf_type.sizeof() == BTF_TYPE_SIZE
assert (btf_array.sizeof(), btf_member.sizeof(), btf_enum.sizeof(), btf_param.sizeof(),
        btf_var_secinfo.sizeof(), btf_enum64.sizeof()) == (12, 12, 8, 8, 12, 12)
