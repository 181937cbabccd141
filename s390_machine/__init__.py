"""The simulated s390x system: a raw memory image (QEMU pmemsave compatible) plus CPU state."""
