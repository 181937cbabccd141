"""The kernel's BTF blob (vmcore/btf.py): Btf(), then every struct's members and sizes and the
task_struct member paths `vmcore ps` asks for."""

from vmcore.btf import Btf

MAX_LEN = 4096
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"\xeb\x9f\x01\x00",
    b"\x00\x00\x00\x18",
    b"\x04\x00\x00\x02",          # info: struct, vlen 2
    b"\x08\x00\x00\x00",          # typedef
    b"\x03\x00\x00\x00",          # array
    b"\x80\x00\x00\x00",          # kind_flag
    b"task_struct\x00",
    b"thread\x00",
    b"ksp\x00",
    b"\xff\xff\xff\xff",
)
PATHS = ("pid", "comm", "__state", "tasks", "thread.ksp", "thread_info.cpu", "signal")


def target(data: bytes) -> None:
    btf = Btf(data)
    for tid in range(1, len(btf)):
        if btf.kind_name(tid) in ("struct", "union"):
            btf.name(tid)
            btf.sizeof(tid)
            for m in btf.members(tid):
                if btf.kind_name(btf.resolve(m.type)) not in ("func_proto", "func", "fwd", "var", "datasec"):
                    btf.sizeof(m.type)
        elif btf.kind_name(tid) == "array":
            btf.array(tid)
    for p in PATHS:
        btf.field("task_struct", p)
    btf.struct_size("list_head")


def seeds(ctx):
    yield blob()


def blob() -> bytes:
    """A small big-endian blob: int, list_head, thread_struct, a task_struct with an anonymous
    member, a typedef and an array, written with the layouts of meminfo_abi/btf.py."""
    from meminfo_abi import btf as abi
    strings = bytearray(b"\0")

    def name(text: str) -> int:
        strings.extend(text.encode() + b"\0")
        return len(strings) - len(text) - 1

    types = bytearray()

    def add(kind: int, nm: str, size_type: int, records=(), layout=None, kflag=False) -> None:
        vlen = len(records) if layout is abi.btf_member else 0
        info = (kind << abi.BTF_INFO_KIND_SHIFT) | vlen | (abi.BTF_INFO_KFLAG if kflag else 0)
        types.extend(abi.btf_type.build({"name_off": name(nm) if nm else 0, "info": info, "size_type": size_type}))
        for r in records:
            types.extend(layout.build(r))

    def members(*ms):
        return [{"name_off": name(n) if n else 0, "type": t, "offset": off * 8} for n, t, off in ms]

    add(abi.BTF_KIND_INT, "int", 4, [{"encoding": (1 << 24) | 32}], abi.btf_int)                     # 1
    add(abi.BTF_KIND_STRUCT, "list_head", 16, members(("next", 3, 0), ("prev", 3, 8)), abi.btf_member)  # 2
    add(abi.BTF_KIND_PTR, "", 2)                                                                      # 3
    add(abi.BTF_KIND_STRUCT, "thread_struct", 16, members(("ksp", 1, 8)), abi.btf_member)             # 4
    add(abi.BTF_KIND_TYPEDEF, "pid_t", 1)                                                             # 5
    add(abi.BTF_KIND_ARRAY, "", 0, [{"type": 1, "index_type": 1, "nelems": 4}], abi.btf_array)        # 6
    add(abi.BTF_KIND_STRUCT, "", 8, members(("signal", 3, 0)), abi.btf_member)                        # 7
    add(abi.BTF_KIND_STRUCT, "task_struct", 64,
        members(("__state", 1, 0), ("pid", 5, 4), ("tasks", 2, 8), ("comm", 6, 24), ("", 7, 40),
                ("thread", 4, 48)), abi.btf_member)                                                   # 8
    header = abi.btf_header.build({"magic": abi.BTF_MAGIC, "version": abi.BTF_VERSION, "flags": 0,
                                   "hdr_len": abi.BTF_HEADER_SIZE, "type_off": 0, "type_len": len(types),
                                   "str_off": len(types), "str_len": len(strings)})
    return header + bytes(types) + bytes(strings)
