"""How nnlite's Numba kernels are compiled: where the machine code is cached, which threads
run the parallel loops, and with which flags.

Every module that compiles kernels (kernels, winograd, cuda_kernels) imports from
here, so importing it sets two things up before the first kernel is defined:

    the cache folder     `cache=CACHE` stores each compiled kernel on disk, so that a new process
                         loads it instead of compiling again (a minute or two for all of them).
                         By default Numba writes next to the source, into the installed
                         package, where a leftover __pycache__ outlives `pip uninstall` and
                         turns `nnlite` into an empty namespace package that shadows a later
                         install. So nnlite points NUMBA_CACHE_DIR at a folder of the user's:
                         $XDG_CACHE_HOME/nnlite/numba, or ~/.cache/nnlite/numba (a
                         NUMBA_CACHE_DIR set by the user wins). When that folder cannot be
                         written (a read-only HOME), a private folder in the temporary
                         directory takes its place, and when none can be written, kernels are
                         not cached (CACHE is False): one warning says which, where Numba
                         would stop with "cannot cache function ... no locator available".
    the threading layer  workqueue, unless NUMBA_THREADING_LAYER says otherwise: its idle
                         workers sleep, where OpenMP's spin-wait after every kernel and, on a
                         small CPU, take the cores that BLAS's workers need (and theirs ours).

and it gives the kernels their compile options:

    serial_and_parallel  a decorator compiling one loop kernel twice, serial and parallel=True;
    pick                 the serial twin for calls under PARALLEL_MIN elements of work
    FAST                 the fastmath flags the reductions may use
"""

import os
import stat
import tempfile
import types
import warnings

import numba
from numba import njit


# -- the cache folder, and the threading layer ----------------------------------------------
def _writable(folder):
    """None if `folder` exists or can be made and a file can be written in it, else why not."""
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # the same test as Numba's own
    except OSError as err:
        return f"{folder}: {err.strerror or err}"
    return None


def _private_temporary_folder():
    """A folder of this user's alone in the temporary directory, or None.

    Numba's cache files are pickles, which run code when loaded, so a folder that another user
    could have made (the temporary directory is shared) is refused unless it is a real
    directory, ours, and closed to everyone else."""
    try:
        base = tempfile.gettempdir()
    except OSError:  # (FileNotFoundError: no usable temporary directory at all)
        return None
    # (on Windows the temporary directory is the user's own already)
    folder = os.path.join(base, f"nnlite-numba-{os.getuid()}" if hasattr(os, "getuid")
                          else "nnlite-numba")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o077:
        return None
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return None
    return None if _writable(folder) else folder


def _user_cache_folder(environ):
    """$XDG_CACHE_HOME/nnlite/numba, or ~/.cache/nnlite/numba (a sibling of other tools'
    caches there; XDG_CACHE_HOME counts only when absolute, as the XDG specification says)."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nnlite", "numba")


def choose_cache_folder(environ):
    """(folder or None, warning or None): where Numba should cache compiled kernels.

    A NUMBA_CACHE_DIR in `environ` is taken as it is when it can be written; otherwise, like
    the user cache folder, it gives way to a private temporary folder, and with none of them
    writable there is no cache (None)."""
    wanted = environ.get("NUMBA_CACHE_DIR") or _user_cache_folder(environ)
    problem = _writable(wanted)
    if problem is None:
        return wanted, None
    fallback = _private_temporary_folder()
    if fallback is not None:
        return fallback, (f"nnlite: Numba's cache folder cannot be written ({problem}); compiled "
                          f"kernels are cached in {fallback} instead. Set NUMBA_CACHE_DIR to a "
                          "writable folder to choose another.")
    return None, (f"nnlite: Numba's cache folder cannot be written ({problem}), nor a temporary "
                  "one; compiled kernels are not cached, so every process compiles them again. "
                  "Set NUMBA_CACHE_DIR to a writable folder to cache them.")


def _apply_cache_folder():
    folder, warning = choose_cache_folder(os.environ)
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    if folder is not None and os.environ.get("NUMBA_CACHE_DIR") != folder:
        os.environ["NUMBA_CACHE_DIR"] = folder
        # Numba read its environment when it was imported; this reads it again now (it would
        # at the next compilation anyway, but a kernel's cache is located when it is defined)
        numba.config.reload_config()
    return folder is not None


CACHE = _apply_cache_folder()  # the `cache=` of every nnlite kernel
CACHE_FOLDER = os.environ.get("NUMBA_CACHE_DIR") if CACHE else None

# After the reload above, which would reset it. An explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


# -- compile options -------------------------------------------------------------------------
# Reassociation lets LLVM vectorize a float reduction (sum += v) with several partial sums.
# Never "nnan"/"ninf": they would let LLVM assume away the -inf of max-pool padding or a NaN
# that should propagate.
FAST = {"reassoc", "contract", "nsz"}

# Starting the worker threads costs little on an idle machine but up to a scheduler time slice
# on a busy one (a worker that is not running must be woken and scheduled), and small layers
# (batch 1, the late 6x6 maps) are many and cheap. So each parallel kernel is compiled twice,
# and the serial twin runs any call with less than PARALLEL_MIN elements of work.
PARALLEL_MIN = 1 << 21  # measured on a busy 2-core machine; a launch there can cost ~5 ms


def serial_and_parallel(fastmath=False, error_model="python"):
    """Decorator: (serial, parallel) compilations of one kernel; `prange` is `range` in the
    serial one. The parallel copy gets its own name so the two never share a cache entry."""

    def compile_both(fn):
        serial = njit(cache=CACHE, fastmath=fastmath, error_model=error_model)(fn)
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel")
        twin.__qualname__ = fn.__qualname__ + "_parallel"
        return serial, njit(parallel=True, cache=CACHE, fastmath=fastmath,
                            error_model=error_model)(twin)

    return compile_both


def pick(kernels, work):
    """The twin of `kernels` (serial, parallel) for a call with `work` elements."""
    return kernels[1] if work >= PARALLEL_MIN else kernels[0]
