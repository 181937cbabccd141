/* Calls a kdump purgatory as the kernel does at the crash (start_kdump(0), "intact?") on a
   crashkernel region mapped from a memory image: argv FILE OFFSET BASE SIZE [FLIP_ADDRESS] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    unsigned long off = strtoul(argv[2], 0, 0), base = strtoul(argv[3], 0, 0), size = strtoul(argv[4], 0, 0);
    int fd = open(argv[1], O_RDONLY);
    unsigned char *p = mmap((void *)base, size, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, off);
    if (fd < 0 || p == MAP_FAILED) { perror(argv[1]); return 2; }
    if (argc > 5) p[strtoul(argv[5], 0, 0) - base] ^= 0x01;
    int (*start_kdump)(long) = (int (*)(long))(base + 0x2800);
    printf("%d\n", start_kdump(0));
    return 0;
}
