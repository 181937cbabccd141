"""kexec-s390: load a kdump kernel into crashkernel memory the s390 way (see issue 3)."""
