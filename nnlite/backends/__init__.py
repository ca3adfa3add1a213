"""Backends: where arrays live and which kernel module runs the hot loops.

There is one maths (the ops in `nnlite.functions`) and three ways to run it:

- ``numpy``: the readable reference. Kernels in `numpy_kernels.py` are the specification.
- ``numba``: the same kernels compiled for the CPU with Numba (`numba/kernels.py`, with
  `unfold.py`, `winograd.py`, `depthwise.py`, `pool.py` and `compile.py` beside it).
- ``cuda``: arrays are CuPy arrays on the GPU, GEMMs go to cuBLAS, and the hot loops are
  Numba CUDA kernels (`cuda_kernels.py`).

An op picks its kernels from its input arrays: CuPy arrays always use the CUDA kernels; NumPy
arrays use the NumPy or Numba kernels, whichever `use()` selected. Arrays never move between
host and device on their own: `to_device` is the one crossing, and mixing the two in one op is
an error that says what to do.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set before Numba is imported) the
``cuda`` backend needs neither a GPU nor CuPy: its arrays stay NumPy arrays and the CUDA
kernels run on them, each GPU thread in Python. That is how the test suite re-runs on the CUDA
kernels on a machine without a GPU (tests/test_cuda_sim.py); it is far too slow for real work.
"""

import importlib
import os

import numpy as np

# Re-exported: `backends.to_numpy(x)` and friends read well beside `to_device`.
from nnlite.device import (DeviceMismatchError, check_same_device, device_of,  # noqa: F401
                           get_array_module, is_array, to_numpy)

NAMES = ("numpy", "numba", "cuda")

# The kernel contract: every kernel module (numpy_kernels, the specification; numba.kernels;
# cuda_kernels) defines each of these with the same signature, and every backward kernel takes
# the upstream gradient first (tests/test_backends.py checks both). A new backend starts here.
KERNELS = (
    "output_size", "im2col", "col2im",
    "conv2d_forward", "conv2d_backward", "grouped_conv2d_forward", "grouped_conv2d_backward",
    "max_pool_forward", "max_pool_backward",
    "lrn_forward", "lrn_backward",
    "batch_norm_stats", "batch_norm_running_update", "batch_norm_forward", "batch_norm_backward",
    "relu_forward", "relu_backward",
    "log_softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "dropout_mask",
    "sgd_update", "adam_update",
)
# Each backend's kernel module, imported on first use.
KERNEL_MODULES = {"numpy": "nnlite.backends.numpy_kernels", "numba": "nnlite.backends.numba.kernels",
                  "cuda": "nnlite.backends.cuda_kernels"}
# Numba reads the variable as an int, once, when it is first imported.
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")
_current = "numpy"
_kernel_modules = {}
_cupy = None  # imported lazily: importing CuPy is slow and it is optional


class BackendError(RuntimeError):
    """A backend was asked for that cannot run here (the message says why)."""


def _import_cupy():
    global _cupy
    if _cupy is None:
        import cupy

        _cupy = cupy
    return _cupy


def _why_unavailable(name: str):
    """None when backend `name` can run here, else one sentence saying why not."""
    if name == "numpy":
        return None
    if name == "numba":
        try:
            import numba  # noqa: F401
        except ImportError as err:
            return f"Numba is not installed ({err}); pip install numba"
        try:  # the kernels themselves: defining them is where a cache folder is needed, say
            importlib.import_module(KERNEL_MODULES["numba"])
        except Exception as err:
            return f"the Numba kernels cannot be loaded ({type(err).__name__}: {err})"
        return None
    if name == "cuda" and SIMULATOR:
        try:
            from numba import cuda as numba_cuda  # noqa: F401
        except Exception as err:
            return f"Numba's CUDA simulator cannot be loaded ({type(err).__name__}: {err})"
        return None
    if name == "cuda":
        try:
            cupy = _import_cupy()
        except Exception as err:  # ImportError, or a CuPy wheel that does not match the driver
            return (
                f"CuPy is not importable ({type(err).__name__}: {err}); install the extra that "
                "matches your CUDA driver: pip install 'emotion-nnlite[cuda12]' or '[cuda13]'"
            )
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as err:
            return f"no usable CUDA GPU ({type(err).__name__}: {err})"
        if count == 0:
            return "no CUDA GPU is visible on this machine"
        try:
            from numba import cuda as numba_cuda

            if not numba_cuda.is_available():
                return "Numba cannot reach the CUDA driver (numba.cuda.is_available() is False)"
        except Exception as err:
            return f"Numba CUDA is not usable ({type(err).__name__}: {err})"
        return None
    return f"unknown backend {name!r}; choose one of {', '.join(NAMES)}"


def available() -> dict:
    """Each backend name -> None if it can run here, else the reason it cannot."""
    return {name: _why_unavailable(name) for name in NAMES}


def use(name: str) -> None:
    """Select the backend for new work: "numpy", "numba" or "cuda"."""
    global _current, _environment_error
    reason = _why_unavailable(name)
    if reason is not None:
        raise BackendError(f"backend {name!r} is not available: {reason}")
    _current, _environment_error = name, None


def current() -> str:
    if _environment_error is not None:
        raise _environment_error
    return _current


def default_device() -> str:
    """Where new models and data go under the current backend: "cuda" or "cpu"."""
    return "cuda" if current() == "cuda" else "cpu"


# -- arrays and devices: nnlite.device, except the one crossing --------------------------------
def to_device(array, device: str):
    """An explicit copy of `array` to "cpu" or "cuda" (the only host/device crossing)."""
    if device == "cpu":
        return to_numpy(array)
    if device == "cuda" and SIMULATOR:  # a new buffer, as a copy to a GPU is, on the host
        return np.array(to_numpy(array))
    if device == "cuda":
        reason = _why_unavailable("cuda")
        if reason is not None:
            raise BackendError(f"cannot move data to the GPU: {reason}")
        return _import_cupy().asarray(array)
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")


# -- kernels ---------------------------------------------------------------------------------
def kernels_for(array):
    """The kernel module that runs ops on `array`: by device, then by the selected backend."""
    if device_of(array) == "cuda" or (SIMULATOR and current() == "cuda"):
        name = "cuda"
    else:
        name = "numba" if current() == "numba" else "numpy"
    module = _kernel_modules.get(name)
    if module is None:
        module = importlib.import_module(KERNEL_MODULES[name])
        _kernel_modules[name] = module
    return module


_environment_error = None  # a NNLITE_BACKEND that cannot run here, reported at first use


def _use_from_environment():
    """Apply NNLITE_BACKEND. If it cannot run here, importing nnlite still works (so a program
    can catch the error and say so cleanly); the first op raises the BackendError instead."""
    global _environment_error
    name = os.environ.get("NNLITE_BACKEND")
    if name:
        try:
            use(name.strip().lower())
        except BackendError as err:
            _environment_error = BackendError(f"NNLITE_BACKEND={name}: {err}")


_use_from_environment()
