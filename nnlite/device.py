"""Where an array lives: the host (NumPy) or the GPU (CuPy), and the checks that keep the two apart.

    is_array(value)            a NumPy or CuPy array?
    device_of(array)           "cpu" or "cuda"
    get_array_module(array)    numpy or cupy: an op is written once against `xp`
    to_numpy(x)                a host array from a Tensor or an array on any device
    check_same_device(arrays)  DeviceMismatchError if an op got arrays from both

This module imports nothing of nnlite, so that every other module (the random streams, the
kernels, the backends' switch) can depend on it without a circle. Choosing a backend and the
one explicit host/device crossing (`to_device`) live in nnlite.backends.
"""

import sys

import numpy as np


class DeviceMismatchError(RuntimeError):
    """An op got arrays from both the host and the GPU."""


def _cupy_if_loaded():
    """CuPy only if something already imported it: a host-only run never pays for the import."""
    return sys.modules.get("cupy")


def is_array(value) -> bool:
    if isinstance(value, np.ndarray):
        return True
    cupy = _cupy_if_loaded()
    return cupy is not None and isinstance(value, cupy.ndarray)


def device_of(array) -> str:
    return "cpu" if isinstance(array, (np.ndarray, np.generic)) else "cuda"


def get_array_module(array):
    """`numpy` for host arrays, `cupy` for device arrays: write an op once against `xp`."""
    cupy = _cupy_if_loaded()
    if isinstance(array, (np.ndarray, np.generic)) or cupy is None:
        return np
    return cupy.get_array_module(array)


def to_numpy(array) -> np.ndarray:
    """A NumPy copy of a device array, or the array itself if it is already on the host."""
    if hasattr(array, "data") and not is_array(array):  # a Tensor
        array = array.data
    if isinstance(array, np.ndarray):
        return array
    return array.get()


def check_same_device(arrays, op: str = "op") -> None:
    devices = {device_of(a) for a in arrays}
    if len(devices) > 1:
        raise DeviceMismatchError(
            f"{op} got arrays on both the CPU and the GPU; move them explicitly first, "
            "e.g. tensor.to('cuda') or model.to('cuda') (nnlite never copies implicitly)"
        )
