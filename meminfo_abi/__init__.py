"""Every binary layout of the suite, declared once (big-endian s390x) with construct.

Modules, each named after the ABI it declares:
  lowcore     - the prefix area / absolute lowcore fields dumps need, store-status save area
  parmarea    - kernel parameter area at 0x10400 and the S390EP image header
  meminfo     - the meminfo block (an os_info page) and its kexec segment table
  elfnotes    - s390x ELF note payloads (prstatus, fpregset, timer, ..., vxrs, prpsinfo)
  vmcoreinfo  - the VMCOREINFO note and its KEY=VALUE text
  printk      - printk ring buffer (5.10+) and legacy log_buf record layouts
  checksum    - the CKSM checksum API (implemented in native/)
  s390_dump   - the s390 stand-alone dump family (s390_dump.h: df_s390_hdr, df_s390_em, segments, zipl dump records)
  s390_dump_stream, s390_dump_device, s390_dump_reader - walking a stream, finding the dump area on a
                device image, the one reader of a whole dump (sadump and vmcore)
  tod         - the TOD clock
  errors      - typed errors and exit codes shared by every CLI
"""
