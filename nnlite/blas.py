"""BLAS's threads: how many threads the BLAS libraries give each GEMM, and a context to set it.

    blas_on_threads(n)       a context in which BLAS runs on n threads (the Numba backend's
                             thread pool wants one while its own threads work; so does the face
                             pipeline, on every backend)
    numpy_blas_threads()     how many threads NumPy's own BLAS would use now

Nothing here imports Numba: it is a public setting of the engine, not part of one backend.
"""

import os

import numpy as np
from threadpoolctl import ThreadpoolController


def blas_on_threads(threads):
    """A context in which the BLAS libraries run each GEMM on `threads` threads; their own
    counts come back on leaving it. (Idle OpenBLAS workers spin-wait after every call, so code
    that keeps the cores busy itself wants BLAS on one.) It reaches the libraries loaded when
    it was first called: threadpoolctl's view of them is made once, as it takes milliseconds."""
    return _blas().limit(limits=threads, user_api="blas")


def numpy_blas_threads():
    """How many threads NumPy's BLAS would give a GEMM called here now (a ctypes call, ~1 us),
    or 0 when we cannot tell which library is NumPy's.

    NumPy's own: SciPy and OpenCV bring BLAS libraries of their own, which a limit set before
    they were loaded does not reach. A NumPy wheel's lies under numpy's folder; a NumPy built
    against the system's BLAS (conda, a distribution) cannot be told apart from the others, and
    the caller then keeps to its default path."""
    global _numpy_blas
    if _numpy_blas is None:
        # site-packages/numpy.libs/ (Linux wheels), site-packages/numpy/.dylibs/ (macOS)
        prefix = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")
        own = [lib for lib in _blas().lib_controllers
               if lib.user_api == "blas" and lib.filepath.startswith(prefix)]
        _numpy_blas = own[0] if own else False
    return _numpy_blas.num_threads if _numpy_blas else 0


def _blas():
    """threadpoolctl's view of the BLAS libraries loaded, made once (it takes milliseconds)."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    return _blas_controller


_blas_controller = None
_numpy_blas = None  # see numpy_blas_threads
