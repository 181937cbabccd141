"""Issue 19 on a hand-built machine: kernel page tables, kallsyms and stacks laid out byte by byte
as the z/Architecture and the kernel define them, then read back through `vmcore vtop`, `sym`,
`read --virt` and `bt`.

The simulated machine's VMCOREINFO carries no kallsyms (it runs no kernel), so the decoders are
tested on small tables built here; tests/realworld/test_backtrace.py checks them against a real
kernel's own Call Trace and /proc/kallsyms.
"""

from __future__ import annotations

import json
import struct
import subprocess

import pytest

from meminfo_abi import dat
from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError
from meminfo_abi.lowcore import LC_LINUX_STACKS
from meminfo_abi.stackframe import (PSW_MASK_PSTATE, STACK_FRAME_BACK_CHAIN, STACK_FRAME_OVERHEAD,
                                    STACK_FRAME_R14, THREAD_SIZE)
from meminfo_abi.vmcoreinfo import VmcoreInfo
from tests.conftest import run_cli
from vmcore.backtrace import backtraces, crash_site
from vmcore.kallsyms import decode_addresses, decode_names, load_kallsyms
from vmcore.kvaddr import KernelSpace, TranslationError
from vmcore.model import BytesSource, Dump, DumpAttrs, MemChunk

MiB = 1 << 20
MEM = 8 * MiB
PGD = 0x100000                    # swapper_pg_dir: region-third table, 4 pages
SEG_LOW = 0x104000                # segment table for VA 0 .. 2 GiB
SEG_HIGH = 0x108000               # segment table for the top 2 GiB (stacks)
PT_LOW = 0x10C000                 # page table for VA 2..3 MiB
PT_STACK = 0x10C800               # page table for the stacks' segment
TASK_STACK = 0x3FF_8000_0000      # virtual, THREAD_SIZE aligned
IRQ_STACK = TASK_STACK + 0x10000
TASK_PHYS, IRQ_PHYS = 0x200000, 0x210000
KALLSYMS = 0x280000               # identity mapped through PT_LOW

FUNCS = {"_stext": 0x10000, "func_a": 0x10000, "func_b": 0x10100, "func_c": 0x10200, "panic": 0x10300,
         "irq_handler": 0x10400, "system_call": 0x10500, "_etext": 0x10600}
TOKENS = ["func_", "irq_", "system", "handler", "call", "_s", "te"]


def crst(n: int, entry: int) -> bytearray:
    return bytearray(struct.pack(">Q", entry) * n)


def put(mem: bytearray, addr: int, data: bytes) -> None:
    mem[addr:addr + len(data)] = data


def u64(v: int) -> bytes:
    return struct.pack(">Q", v)


def token_tables() -> tuple[bytes, list[int], dict[str, int]]:
    """256 tokens: single characters, with a few codes below 0x20 standing for longer strings."""
    toks = [chr(i) if i >= 0x20 else "" for i in range(256)]
    for i, t in enumerate(TOKENS, start=1):
        toks[i] = t
    table, index = b"", []
    for t in toks:
        index.append(len(table))
        table += t.encode("latin-1") + b"\0"
    return table, index, {t: i for i, t in enumerate(toks) if t}


def compress(text: str, codes: dict[str, int]) -> bytes:
    out, i = [], 0
    while i < len(text):
        for t in sorted(codes, key=len, reverse=True):
            if text.startswith(t, i):
                out.append(codes[t])
                i += len(t)
                break
    n = len(out)
    head = bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
    return head + bytes(out)


def kallsyms_blob(syms: list[tuple[str, str, int]], base: int, kaslr_missing: int = 0):
    """The six kallsyms objects at KALLSYMS; relative_base stored kaslr_missing too low (as if
    the tables were not relocated)."""
    table, index, codes = token_tables()
    names = b"".join(compress(t + n, codes) for t, n, _a in syms)
    offsets = b"".join(struct.pack(">i", a - base) for _t, _n, a in syms)
    layout = {}
    blob = bytearray()
    for key, data in (("kallsyms_offsets", offsets), ("kallsyms_relative_base", u64(base - kaslr_missing)),
                      ("kallsyms_num_syms", struct.pack(">I", len(syms)) + bytes(4)), ("kallsyms_names", names),
                      ("kallsyms_token_table", table), ("kallsyms_token_index", struct.pack(">256H", *index))):
        blob += bytes(-len(blob) % 8)
        layout[key] = KALLSYMS + len(blob)
        blob += data
    return bytes(blob), layout


def frame(mem: bytearray, phys: int, back_chain: int, r14: int | None = None) -> None:
    put(mem, phys + STACK_FRAME_BACK_CHAIN, u64(back_chain))
    if r14 is not None:
        put(mem, phys + STACK_FRAME_R14, u64(r14))


def pt_regs(mem: bytearray, phys: int, psw_mask: int, psw_addr: int, r15: int) -> None:
    put(mem, phys + 8, u64(psw_mask) + u64(psw_addr))
    put(mem, phys + 24 + 15 * 8, u64(r15))


def machine(asce_in_cr1: bool = True, kaslr_missing: int = 0) -> Dump:
    mem = bytearray(MEM)
    # region-third table: entry 0 -> SEG_LOW, entry 2047 -> SEG_HIGH, entry 1 a 2 GiB frame at 0
    r3 = crst(2048, dat._REGION_ENTRY_INVALID | dat._ASCE_TYPE_REGION3)
    r3[0:8] = u64(SEG_LOW | dat._ASCE_TYPE_REGION3 | 3)
    r3[8:16] = u64(0 | dat._REGION3_ENTRY_LARGE | dat._ASCE_TYPE_REGION3)
    r3[2047 * 8:2048 * 8] = u64(SEG_HIGH | dat._ASCE_TYPE_REGION3 | 3)
    put(mem, PGD, r3)
    low = crst(2048, dat._SEGMENT_ENTRY_INVALID)
    low[0:8] = u64(0x000000 | dat._SEGMENT_ENTRY_LARGE)                 # 0..1 MiB: a 1 MiB frame
    low[8:16] = u64(0x100000 | dat._SEGMENT_ENTRY_LARGE | dat._SEGMENT_ENTRY_PROTECT)
    low[16:24] = u64(PT_LOW)                                              # 2..3 MiB: 4 KiB pages
    put(mem, SEG_LOW, low)
    pt = bytearray()
    for i in range(256):
        pt += u64(dat._PAGE_INVALID if i == 255 else 0x200000 + i * 4096)  # last page unmapped
    put(mem, PT_LOW, pt)
    high = crst(2048, dat._SEGMENT_ENTRY_INVALID)
    high[0:8] = u64(PT_STACK)                  # TASK_STACK is the first segment of region 2047
    put(mem, SEG_HIGH, high)
    pts = bytearray(u64(dat._PAGE_INVALID) * 256)
    for i in range(4):
        pts[i * 8:i * 8 + 8] = u64(TASK_PHYS + i * 4096)
        pts[(16 + i) * 8:(17 + i) * 8] = u64(IRQ_PHYS + i * 4096)
    put(mem, PT_STACK, pts)
    # kallsyms
    # by address, names with leading underscores after the others (as scripts/kallsyms orders)
    syms = sorted([("T", n, a) for n, a in FUNCS.items()], key=lambda s: (s[2], s[1].startswith("_")))
    syms.append(("t", "x" * 200 + "_long_static_name", 0x10680))      # a 2-byte name length
    blob, layout = kallsyms_blob(syms, 0x10000, kaslr_missing)
    put(mem, KALLSYMS, blob)
    # stacks: CPU on the IRQ stack in func_a, interrupted func_b on the task stack,
    # which came from system_call (user space)
    v2p = lambda v: v - TASK_STACK + TASK_PHYS if v < IRQ_STACK else v - IRQ_STACK + IRQ_PHYS
    irq0, irq1 = IRQ_STACK + 0x3C00, IRQ_STACK + 0x3D00
    task1, task2, task3 = TASK_STACK + 0x3B00, TASK_STACK + 0x3C00, TASK_STACK + 0x3D00
    frame(mem, v2p(irq0), irq1)
    frame(mem, v2p(irq1), 0, FUNCS["irq_handler"] + 0x20)
    pt_regs(mem, v2p(irq1) + STACK_FRAME_OVERHEAD, 0x0704000180000000, FUNCS["func_b"] + 0x30, task1)
    frame(mem, v2p(task1), task2)
    frame(mem, v2p(task2), task3, FUNCS["panic"] + 0x8)
    frame(mem, v2p(task3), 0, FUNCS["system_call"] + 0x4)
    pt_regs(mem, v2p(task3) + STACK_FRAME_OVERHEAD, 0x0705000180000000 | PSW_MASK_PSTATE, 0x1000, 0x3FFFFFF0000)
    # lowcore stack pointers (prefix 0)
    bases = {"task": TASK_STACK, "irq": IRQ_STACK, "nodat": 0x380000, "restart": 0x384000, "mcck": 0x388000}
    for kind, off in LC_LINUX_STACKS:
        put(mem, off, u64(bases[kind] + THREAD_SIZE - 0x168))
    cpu = CpuRegs(address=0, prefix=0, psw_mask=0x0704000180000000, psw_addr=FUNCS["func_a"] + 0x10)
    cpu.gprs[15] = irq0
    cpu.gprs[14] = FUNCS["func_a"] + 0x4
    cpu.crs[1] = PGD | dat._ASCE_TYPE_REGION3 | 3 if asce_in_cr1 else 0
    vi = VmcoreInfo.from_pairs({"OSRELEASE": "6.1.0-test", "PAGESIZE": "4096"})
    vi.set_symbol("swapper_pg_dir", PGD)
    vi.set_symbol("_stext", FUNCS["_stext"])
    vi.set_symbol("init_uts_ns", 0x2000)
    for k, a in layout.items():
        vi.set_symbol(k, a)
    put(mem, 0x2000, b"Linux\0")
    attrs = DumpAttrs(format="test")
    attrs.set_vmcoreinfo(vi.text().encode(), "test")
    return Dump([MemChunk(0, MEM, BytesSource(bytes(mem)))], [cpu], attrs)


# -- 1. kernel virtual addresses ------------------------------------------------------------------
@pytest.mark.parametrize("asce_in_cr1", [True, False])
def test_dat_walk_through_each_level_and_large_frames(asce_in_cr1):
    space = KernelSpace(machine(asce_in_cr1))
    assert space.asce == PGD | dat._ASCE_TYPE_REGION3 | 3      # from CR1, or from the table's entry type
    tr = space.walk(0x2345)                                    # 1 MiB segment frame
    assert (tr.phys, tr.page_size, [lv.name for lv in tr.levels]) == (0x2345, MiB, ["region-third", "segment"])
    assert space.walk(0x123456).protected
    tr = space.walk(0x203ABC)                                  # page table
    assert (tr.phys, tr.page_size) == (0x203ABC, 4096) and [lv.name for lv in tr.levels][-1] == "page"
    assert tr.levels[2].index == 3 and tr.linear == tr.phys
    tr = space.walk((1 << 31) + 0x1234)                        # 2 GiB region-third frame at 0
    assert (tr.phys, tr.page_size, len(tr.levels)) == (0x1234, 2 << 30, 1)
    assert space.walk(TASK_STACK + 0x1008).phys == TASK_PHYS + 0x1008


@pytest.mark.parametrize("addr, level", [(0x2FF000, "page-translation"), (0x300000, "segment-translation"),
                                         (3 << 31, "region-third-translation"),
                                         (1 << 42, "ASCE-type")])
def test_dat_walk_errors_name_the_address_and_level(addr, level):
    with pytest.raises(TranslationError, match=f"0x{addr:x}.*{level}"):
        KernelSpace(machine()).walk(addr)


def test_read_virtual_crosses_pages_through_the_walk():
    d = machine()
    space = KernelSpace(d)
    va = TASK_STACK + 0x0FF8
    assert space.read(va, 16) == d.read(TASK_PHYS + 0xFF8, 16)
    with pytest.raises(TranslationError):
        space.read(TASK_STACK + 0x3FF8, 16)                    # page 4 of the task stack is not mapped


def test_without_page_tables_in_the_dump_reads_fall_back_to_the_identity_mapping():
    d = machine()
    holed = Dump([MemChunk(0, PGD, BytesSource(d.read(0, PGD))), MemChunk(PGD, 0x10000, None, "absent"),
                  MemChunk(PGD + 0x10000, MEM - PGD - 0x10000, BytesSource(d.read(PGD + 0x10000, MEM - PGD - 0x10000)))],
                 d.cpus, d.attrs)
    space = KernelSpace(holed)
    with pytest.raises(TranslationError, match="region-third table entry .* is not in the dump"):
        space.walk(0x2000)
    assert space.read(0x2000, 6) == b"Linux\0"
    with pytest.raises(TranslationError):
        space.read(TASK_STACK, 8)                              # vmalloc: no identity rule for it


def test_stack_frame_and_pt_regs_offsets_follow_the_abi():
    # packed stack: r6..r15 then the back chain in the top 88 bytes of the 160-byte frame
    assert (STACK_FRAME_R14, STACK_FRAME_BACK_CHAIN, STACK_FRAME_OVERHEAD) == (0x88, 0x98, 160)
    from meminfo_abi.stackframe import pt_regs as layout
    regs = layout.parse(bytes(8) + u64(1) + u64(2) + b"".join(u64(i) for i in range(16)) + bytes(8))
    assert (regs.psw_mask, regs.psw_addr, regs.gprs[15]) == (1, 2, 15)


# -- 2. kallsyms ------------------------------------------------------------------------------------
def test_decode_names_with_tokens_and_long_names():
    table, index, codes = token_tables()
    names = [("T", "func_a"), ("t", "irq_handler"), ("D", "y" * 300)]
    stream = b"".join(compress(t + n, codes) for t, n in names)
    assert decode_names(stream, 3, table, index) == names
    with pytest.raises(BadInputError, match="ends after 3 of 4"):
        decode_names(stream, 4, table, index)


def test_decode_addresses_relative_and_absolute_percpu():
    offs = struct.pack(">3i", 0, 0x100, -1)
    assert decode_addresses(offs, 3, 0x1000, False) == [0x1000, 0x1100, 0x1000 + 0xFFFFFFFF]
    # absolute percpu: >= 0 is an absolute value, < 0 is relative_base - 1 - offset
    assert decode_addresses(offs, 3, 0x1000, True) == [0, 0x100, 0x1000]


@pytest.mark.parametrize("kaslr_missing", [0, -0x200000])
def test_kallsyms_from_memory_is_checked_against_vmcoreinfo_stext(kaslr_missing):
    space = KernelSpace(machine(kaslr_missing=kaslr_missing))
    syms = load_kallsyms(space.read, space.symbol, space.symbols())
    assert syms.kaslr_shift == kaslr_missing
    assert syms.by_name("func_b").address == FUNCS["func_b"]
    assert syms.describe(FUNCS["func_c"] + 0x12) == "func_c+0x12/0x100"
    assert syms.by_name("x" * 200 + "_long_static_name").type == "t"


# -- 3. backtraces ---------------------------------------------------------------------------------
def test_bt_crosses_irq_stack_and_pt_regs_and_stops_at_user_space():
    d = machine()
    space = KernelSpace(d)
    syms = load_kallsyms(space.read, space.symbol, space.symbols())
    (bt,) = backtraces(space, syms, list(enumerate(d.cpus)))
    assert [f.symbol for f in bt.frames] == ["func_a+0x10/0x100", "irq_handler+0x20/0x100", "func_b+0x30/0x100",
                                             "panic+0x8/0x100", "system_call+0x4/0x100"]
    assert [f.stack for f in bt.frames] == ["irq", "irq", "task", "task", "task"]
    assert [f.how for f in bt.frames] == ["psw", "backchain", "pt_regs", "backchain", "backchain"]
    assert "user space" in bt.stop
    assert crash_site([bt], syms)[1] == "system_call+0x4 (called panic)"


def test_bt_stops_on_a_bad_back_chain_with_the_reason():
    d = machine()
    space = KernelSpace(d)
    syms = load_kallsyms(space.read, space.symbol, space.symbols())
    d.cpus[0].gprs[15] = TASK_STACK + 0x3C00          # task2, whose back chain is fine ...
    raw = bytearray(d.read(0, MEM))
    put(raw, TASK_PHYS + 0x3C00 + STACK_FRAME_BACK_CHAIN, u64(TASK_STACK + 0x3000))   # ... now goes down
    bad = Dump([MemChunk(0, MEM, BytesSource(bytes(raw)))], d.cpus, d.attrs)
    (bt,) = backtraces(KernelSpace(bad), syms, [(0, bad.cpus[0])])
    assert "does not go up the stack" in bt.stop and len(bt.frames) == 1
    d.cpus[0].gprs[15] = TASK_STACK + 0x3FF8          # a frame on an unmapped page
    (bt,) = backtraces(space, syms, [(0, d.cpus[0])])
    assert "page-translation exception" in bt.stop


# -- the CLI on a dump file ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dump_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("bt") / "synthetic.elf")
    machine().write(path, "elf")
    return path


def vmcore(*args: str) -> subprocess.CompletedProcess:
    return run_cli("vmcore.cli", *args)


def test_cli_bt_sym_vtop_read(dump_file):
    out = vmcore("bt", dump_file)
    assert out.returncode == 0, out.stderr
    assert f" [<{FUNCS['func_b'] + 0x30:016x}>] func_b+0x30/0x100" in out.stdout and " <irq stack>" in out.stdout
    res = json.loads(vmcore("bt", dump_file, "--cpu", "0", "--json").stdout)
    assert [f["stack"] for f in res["cpus"][0]["frames"]][:2] == ["irq", "irq"]
    assert vmcore("sym", dump_file, "0x10205").stdout.strip() == "func_c+0x5/0x100"
    assert vmcore("sym", dump_file, "func_c").stdout.split()[0] == f"{FUNCS['func_c']:016x}"
    assert len(vmcore("sym", dump_file, "--list").stdout.splitlines()) == len(FUNCS) + 1
    tr = json.loads(vmcore("vtop", dump_file, f"0x{TASK_STACK + 0x10:x}", "--json").stdout)
    assert tr["physical"] == TASK_PHYS + 0x10 and [lv["level"] for lv in tr["levels"]] == ["region-third",
                                                                                           "segment", "page"]
    assert "REGION-THIRD" in vmcore("vtop", dump_file, "func_a").stdout
    assert json.loads(vmcore("read", dump_file, "init_uts_ns", "6", "--json").stdout)["data"] == b"Linux\0".hex()
    virt = json.loads(vmcore("read", dump_file, f"0x{TASK_STACK:x}", "0x10", "--virt", "--json").stdout)
    phys = json.loads(vmcore("read", dump_file, f"0x{TASK_PHYS:x}", "0x10", "--json").stdout)
    assert virt["data"] == phys["data"] and virt["virtual"] and not phys["virtual"]
    info = json.loads(vmcore("info", dump_file, "--json").stdout)
    assert info["crashed_in"] == {"cpu": 0, "where": "system_call+0x4 (called panic)"}


def test_cli_errors_are_one_line_with_exit_3(dump_file):
    for args in (("vtop", dump_file, "0x2ff000"), ("sym", dump_file, "no_such_symbol"),
                 ("read", dump_file, "0x2ff000", "8", "--virt")):
        out = vmcore(*args)
        assert out.returncode == 3 and out.stderr.count("\n") == 1 and not out.stdout, (args, out.stderr)
    assert vmcore("sym", dump_file).returncode == 2
