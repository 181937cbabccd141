"""Every layout of meminfo_abi has its ABI size (and the offsets a dump tool relies on)."""

from meminfo_abi import elfcore, elfnotes, kdumpdev, lowcore, parmarea, reipl, s390_dump
from meminfo_abi.cpu import CpuRegs


def test_lowcore_layouts():
    assert lowcore.SaveArea.sizeof() == lowcore.SAVE_AREA_SIZE == 512
    assert lowcore.VectorSaveArea.sizeof() == lowcore.VX_SAVE_AREA_SIZE == 512
    assert lowcore.LowcoreDumpFields.sizeof() == lowcore.LOWCORE_DUMP_FIELDS_SIZE == 0x1400
    raw = lowcore.LowcoreDumpFields.build(dict(
        ext_cpu_addr=0x1234, ipib=0x1111, ipib_checksum=0x2222, vmcore_info=0x3333, os_info=0x4444,
        mcesad=0x5555, save_area=lowcore.SaveArea.parse(CpuRegs(prefix=0x6666, psw_addr=0x7777).to_save_area())))
    assert raw[0x84:0x86] == b"\x12\x34"
    assert int.from_bytes(raw[0xE00:0xE08], "big") == 0x1111
    assert int.from_bytes(raw[0xE08:0xE0C], "big") == 0x2222
    assert int.from_bytes(raw[0xE0C:0xE14], "big") == 0x3333       # unaligned u64
    assert int.from_bytes(raw[0xE18:0xE20], "big") == 0x4444
    assert int.from_bytes(raw[0x11B0:0x11B8], "big") == 0x5555
    assert int.from_bytes(raw[0x1318:0x131C], "big") == 0x6666       # prefix in the save area
    assert int.from_bytes(raw[0x1308:0x1310], "big") == 0x7777       # PSW address


def test_save_area_offsets_match_ref_abi():
    r = CpuRegs(fprs=[1] * 16, gprs=[2] * 16, psw_mask=3, psw_addr=4, prefix=5, fpc=6, todpreg=7,
                cpu_timer=8, clock_comparator=9, last_break=10, acrs=[11] * 16, crs=[12] * 16)
    sa = r.to_save_area()
    u64 = lambda off: int.from_bytes(sa[off:off + 8], "big")  # noqa: E731
    u32 = lambda off: int.from_bytes(sa[off:off + 4], "big")  # noqa: E731
    assert (u64(0x000), u64(0x080), u64(0x100), u64(0x108)) == (1, 2, 3, 4)
    assert (u32(0x118), u32(0x11C), u32(0x124), u64(0x128), u64(0x130), u64(0x138)) == (5, 6, 7, 8, 9, 10)
    assert (u32(0x140), u64(0x180)) == (11, 12)
    assert CpuRegs.from_save_area(sa) == CpuRegs(**{**r.__dict__, "address": 0})


def test_parmarea_and_image_header():
    assert parmarea.ParmArea.sizeof() == parmarea.PARMAREA_FIXED_SIZE == 0x80
    assert parmarea.S390EPHeader.sizeof() == parmarea.S390EP_HEADER_SIZE == 0x20
    assert parmarea.PARM_OLDMEM_BASE == 0x10418 and parmarea.PARM_OLDMEM_SIZE == 0x10420
    assert parmarea.PARM_COMMAND_LINE == 0x10480 and parmarea.PARM_MAX_COMMAND_LINE_SIZE == 0x10430
    raw = parmarea.ParmArea.build(dict(ipl_device=1, initrd_start=2, initrd_size=3, oldmem_base=4,
                                       oldmem_size=5, kernel_version=6, max_command_line_size=7))
    assert [int.from_bytes(raw[i:i + 8], "big") for i in range(0, 0x38, 8)] == [1, 2, 3, 4, 5, 6, 7]


def test_other_layouts():
    assert elfcore.Elf64_Ehdr.sizeof() == 64 and elfcore.Elf64_Phdr.sizeof() == 56
    assert elfcore.Elf64_Shdr.sizeof() == 64
    assert elfnotes.Elf64_Nhdr.sizeof() == 12 and elfnotes.NtPrstatus.sizeof() == 336
    assert reipl.IplPbHdr.sizeof() == 8 and len(reipl.build_ccw_block(0x1234)) == 8 + reipl.IPL_PB0_CCW_SIZE
    assert kdumpdev.KdumpDeviceTable.sizeof() == kdumpdev.KDUMP_DEV_TABLE_SIZE == 4096
    assert s390_dump.DfS390Hdr.sizeof() == 4096
