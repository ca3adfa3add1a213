"""Keep freed memory in the process, so that the next training step does not page-fault.

Every op returns new arrays, and a training step allocates and frees a few hundred MB of
activations and gradients. By default glibc's malloc returns large freed blocks to the
operating system (munmap, or trimming the top of the heap), so the next step touches fresh
pages again: a page fault and a page of zeros for every 4 KB. On the 2-core EPYC that was
about 45 ms of a 410 ms compact-net training step (measured: 408-428 ms against 368-383 ms
with the settings below). PyTorch avoids the same cost with its caching allocator; here two
malloc settings do the job: blocks up to 32 MB (the largest glibc allows) come from the heap,
and the heap is not trimmed until 1 GB of it is free.

The price: the process keeps its peak memory instead of returning it between steps. That is
what a training loop wants, so `emotion train` and the benchmarks call this; a program that
only runs inference has no need to.
"""

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse. Returns True if both settings took,
    False where that is not possible (not Linux, or a C library without mallopt, e.g. musl;
    nothing is changed then) or if glibc refused one of them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))
