# kexec-s390's purgatory for a real kexec_load(2) of a kdump kernel (s390x, 64-bit).
#
# Loaded as one page at crash base + 0x2000: the segment table (KDSEGTAB, the layout of
# meminfo_abi/meminfo.py) at offset 0, this code at offset 0x800 (the kexec entry point).
# The kernel calls the entry twice, with DAT off (arch/s390/kernel/machine_kexec.c):
#   r2 = 0  "are the checksums valid?": CKSM over [mem, mem + memsz) of every segment in
#           the table but the purgatory's own page, compared with the recorded sum;
#           returns r2 = 0 when all match, 1 otherwise (the kernel then skips kdump);
#   r2 != 0 start kdump: branch to startup_kdump of the loaded kernel (crash base + 0x10010),
#           which swaps [0, crash size) with the crashkernel memory itself and boots.
# Only r0-r5 are used: no stack, nothing the caller must get back but r2.
# segtab and startup_kdump come from the link: ld -Ttext=0x2800 --defsym segtab=0x2000
# --defsym startup_kdump=0x10010 (crash base left out: the branches are PC-relative,
# so the code runs at any crash base)
	.text
	.globl	_start
_start:
	ltgr	%r2,%r2
	jnz	.Lkdump
	larl	%r1,segtab		# the segment table
	llgh	%r3,10(%r1)			# nr_segments
	la	%r1,64(%r1)			# first entry (32 bytes each)
	ltgr	%r3,%r3
	jz	.Lvalid
.Lentry:
	l	%r0,28(%r1)			# kind
	chi	%r0,3				# purgatory: not checked (it holds the table)
	je	.Lnext
	lg	%r4,0(%r1)			# mem
	lg	%r5,8(%r1)			# memsz
	lghi	%r0,0
.Lsum:
	cksm	%r0,%r4
	jo	.Lsum				# cc 3: partial completion, go on
	c	%r0,24(%r1)			# the recorded CKSM
	jne	.Linvalid
.Lnext:
	la	%r1,32(%r1)
	brctg	%r3,.Lentry
.Lvalid:
	lghi	%r2,0
	br	%r14
.Linvalid:
	lghi	%r2,1
	br	%r14
.Lkdump:
	larl	%r1,startup_kdump		# crash base + 0x10010: startup_kdump
	br	%r1
