"""Real s390x kernels under qemu-system-s390x: the harness (harness.py) and the `realworld` tests."""
