"""kdump-compressed dumps (makedumpfile's "diskdump" format), plain and flattened.

Rooms: codecs.py (page compression by name and flag), writer.py (plan, bitmaps, descriptors,
pages on all cores), part.py (one file: headers, bitmaps, descriptors, page data), reader.py
(the parts of a dump assembled into the model).  This module is the registry entry.

Layout and fields: meminfo_abi/diskdump.py, makedumpfile(8) and QEMU's dump/dump.c.

Writer ("kdump"), as makedumpfile -c -d 1 writes it on s390x:
  header version 6 in the byte order asked for (big-endian by default),
  utsname from VMCOREINFO (OSRELEASE, machine "s390x"; the rest from the
  kernel's init_uts_ns when VMCOREINFO locates it and it agrees), the ELF notes
  our ELF writer emits (per-CPU register notes, VMCOREINFO) after the sub
  header, bitmap 1 = pages of the dumped system, bitmap 2 = pages in the file.
  Memory holes (addresses no chunk covers) are in neither bitmap.  Zero pages
  are handled as makedumpfile does for kdump-compressed output: they stay in
  bitmap 2 and all share one descriptor, whose data is a page of zeros written
  first in the data area (dump_level 1).  With exclude_zero they are left out
  of bitmap 2 instead (what makedumpfile does for its ELF output): readers see
  dump_level 1 and nothing else excluded, so the missing pages are zero.
  Uncompressed (compress="none") with zero pages kept, a page is zero when no
  data range of the source touches it (holes of a sparse image, zero chunks),
  whatever its bytes: the layout then follows from the data ranges alone, and
  `vmcore mount -f kdump` serves the same file without reading memory
  (lazy.LazyKdump).
  Each page is compressed on its own (zlib via zlib-ng, level 1 by default;
  lzo, snappy, zstd when their modules are installed) and stored raw when
  compression does not make it smaller.  Compression runs on all cores: a
  thread pool compresses batches of pages while the main thread reads ahead,
  with a bounded number of batches in flight; results are written in page
  order, so the file is byte-identical to the serial one.  Bitmaps and
  descriptors are produced in blocks while streaming (a few MiB whatever the
  memory size).  With exclude_zero the number of descriptors is only known at
  the end, so the table is sized for every page the sources may hold data in
  and the unused tail stays a hole.  Output is atomic (temporary name, rename);
  flattened=True writes the -F stream instead, sequentially.

Reader: probes by content (the "KDUMP   " signature in either byte order, or a
flattened header whose first record is not an ELF header).  Flattened files
are indexed once (one pass over the record headers, flattened.FlatFile) and
read in place; nothing is rebuilt on disk.  Headers and
bitmaps are read at open; descriptors and page data on demand.  Pages in
bitmap 1 but not in bitmap 2 read as zeros when the dump level excluded only
zero pages, and are absent otherwise.  A file that ends early, a descriptor
that was never written or a missing split part make absent chunks and an
incomplete dump naming the physical ranges.  Several files of a split dump
(makedumpfile --split) are read together with `open(paths=[...])`.
"""

from __future__ import annotations

from vmcore.formats.kdump.codecs import FORMAT_NAME, compressor, decompressor
from vmcore.formats.kdump.reader import READER, KdumpReader, read_kdump
from vmcore.formats.kdump.writer import WRITER, KdumpLayout, plan_kdump, write_kdump, write_split

__all__ = ["FORMAT_NAME", "READER", "WRITER", "KdumpLayout", "KdumpReader", "compressor",
           "decompressor", "plan_kdump", "read_kdump", "write_kdump", "write_split"]
