"""Every binary layout of the suite, declared once with construct (big-endian s390x), named
after the ABI, and the small readers of ABI structures that sit right on top of them.

Layouts, each module named after the ABI it declares:
  lowcore      - the prefix area / absolute lowcore fields dumps need, the store-status save area
  cpu          - one CPU's architected registers (CpuRegs), and the registers from a lowcore
  parmarea     - the kernel parameter area at 0x10400 and the S390EP image header
  kernel_image - reading s390x kernel images as kexec-tools' s390 image loader does
  kexec        - kexec_load(2): flags, struct kexec_segment, the segments a loader hands the kernel
  meminfo      - the meminfo block (an os_info page) and its kexec segment table
  checksum     - the CKSM checksum API (implemented in native/)
  locate       - where lowcore 0xE18 (meminfo) and 0xE0C (VMCOREINFO) lead
  reipl        - the re-IPL parameter block a dumper finds through the lowcore
  kdumpdev     - the kdump kernel a dump device carries and its component table
  elfcore      - ELF64 core-file headers (EM_S390)
  elfnotes     - s390x ELF note payloads (prstatus, fpregset, timer, ..., vxrs, prpsinfo)
  vmcoreinfo   - the VMCOREINFO note and its KEY=VALUE text
  printk       - the printk ring buffer (5.10+) and legacy log_buf record layouts
  diskdump     - makedumpfile's kdump-compressed format (disk_dump_header, kdump_sub_header,
                 page_desc, dump level bits) and its flattened form
  flat         - the hot-path struct.Struct form of a fixed-size construct layout
  s390_dump    - the s390 stand-alone dump family (s390_dump.h: df_s390_hdr, df_s390_em,
                 df_s390_dump_segm_hdr, stage2dump_parm_tail, mvdump_parm_table, zipl dump records)
  s390_dump_stream, s390_dump_device, s390_dump_reader
               - walking an extended dump stream, finding the dump area on a device image, the one
                 reader of a whole dump (file, device, tape, volume set) for sadump and vmcore
  tod          - the TOD clock
  dat          - DAT tables (region, segment, page table entries; the Principles of Operation)
  stackframe   - struct stack_frame and struct pt_regs of the s390x kernel stack
  mm           - struct page / mem_section as VMCOREINFO describes them, PG_* flags, page types
  mm_layout    - the memory model of a 6.1 s390x kernel (struct page, mem_section, zone,
                 pglist_data) as the simulated kernel writes it
  btf          - the BPF Type Format (struct btf_header, btf_type, btf_member, ...)

The errors every layer raises live one floor down, in dumpkit/errors.py.
"""
