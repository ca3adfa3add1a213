"""The Numba backend's threads: a pool of Python threads for the convolutions.

The convolutions (kernels' im2col + GEMM, winograd) cut their work into whole
images or chunks of images and run them on a pool of plain Python threads. That works because
both halves of the work release the GIL: the unfolding kernels are compiled with nogil=True,
and NumPy's BLAS drops the GIL for every GEMM. Meanwhile BLAS runs each GEMM on one thread, so
that the two kinds of threads do not compete for the cores.

    run_on_threads(work, n, cost)  work(0) .. work(n-1) on the pool, BLAS on one thread
                             meanwhile; one after another in the calling thread when the
                             call's cost (multiply-adds) is under POOL_MIN_COST
    Shared(items)            a queue that the threads draw items from, first come first served
    blocks(items, n)         items cut into fixed runs, so that sums over them are repeatable

BLAS's own threads are set in nnlite/blas.py, which the face pipeline also uses on every backend.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from nnlite.blas import blas_on_threads


# -- the pool --------------------------------------------------------------------------------
# Handing work to the pool wakes a thread per task: 0.24 ms for two no-op tasks on an idle
# 2-vCPU EPYC VM (the vCPU of a sleeping thread must be woken by the host), more on a busy
# machine, where the work of a small call can be less than that: a 1x1 convolution of the
# mobile net is 0.05-0.2 ms at batch 1. So a call of less than POOL_MIN_COST multiply-adds
# (about a millisecond of GEMM on one core) runs its tasks in the calling thread; the face
# pipeline's batches of a few faces then ran 1.4-1.9x faster (batch 3: 12.2 -> 6.4 ms for
# the mobile net, same run), while training batches stay far above it.
POOL_MIN_COST = 1 << 25


def run_on_threads(work, threads, cost=None):
    """Run work(t) for t = 0..threads-1 on a pool of Python threads, BLAS single-threaded
    meanwhile. An exception in any of them is raised here, after all have stopped (none still
    writes into the caller's arrays).

    With `cost` (the call's multiply-adds) under POOL_MIN_COST, or one thread, work(0),
    work(1), ... run here instead, one after another, with BLAS as the caller has it. The
    tasks draw their items from the same queues either way, so the results are the same."""
    global _pool, _pool_threads
    if threads == 1 or (cost is not None and cost < POOL_MIN_COST):
        for t in range(threads):
            work(t)
        return
    # One call at a time: two Python threads running convolutions would otherwise replace each
    # other's pool, and interleave the BLAS limit's save/restore (leaving BLAS at 1 thread).
    with _pool_lock:
        if _pool is None or _pool_threads != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_threads = ThreadPoolExecutor(threads, thread_name_prefix="nnlite"), threads
        with blas_on_threads(1):
            futures = [_pool.submit(work, t) for t in range(threads)]
            wait(futures)
    for f in futures:
        f.result()  # re-raises a worker's exception


class Shared:
    """Items that several threads draw from together, each item going to whichever thread asks
    first: a thread that the machine slows down takes fewer, where a fixed split would make
    everyone wait for it."""

    def __init__(self, items):
        self._items, self._lock = iter(items), threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            return next(self._items)


def blocks(items, threads):
    """items cut into runs of consecutive items, for threads to draw from a Shared queue when
    their results must be summed: one sum per run, the runs' sums added in order at the end.
    Which thread took which run then changes nothing, not even the last bit (float addition is
    not associative), so a training run is repeatable, and a resumed one matches an
    uninterrupted one on the same number of threads. 8 runs for up to 4 threads: the same
    floats on 1, 2 or 4 threads (as long as the batch takes the same path, im2col or Winograd,
    on each: see winograd.winograd_applies)."""
    items = list(items)
    count = max(1, min(len(items), max(8, 2 * threads)))
    return [items[len(items) * i // count : len(items) * (i + 1) // count] for i in range(count)]


def _forget_pool():
    # After os.fork() the child has the pool object but none of its threads: make a new one.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


_pool, _pool_threads, _pool_lock = None, 0, threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
