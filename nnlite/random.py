"""One seeded random stream per device, so that `nnlite.seed(n)` makes a run reproducible.

Weight initialisation and dropout masks draw from here, never from NumPy's global state.
"""

import numpy as np

from nnlite import device

_host = np.random.default_rng(0)
_device = None  # a CuPy generator, created on first use
_device_seed = 0


def seed(n: int) -> None:
    """Reset every stream nnlite draws from (host and GPU) to a known state."""
    global _host, _device, _device_seed
    _device_seed = int(n)
    _host = np.random.default_rng(_device_seed)
    _device = None


def seed_device(n: int) -> None:
    """Reset only the GPU stream. CuPy's generator state cannot be saved in a checkpoint, so a
    training loop that reseeds it from (seed, step) makes a resumed GPU run draw the same
    dropout masks as an uninterrupted one."""
    global _device, _device_seed
    _device, _device_seed = None, int(n)


def host_rng() -> np.random.Generator:
    return _host


def get_state():
    """The host stream's state (saved in training checkpoints so a resumed run is exact)."""
    return _host.bit_generator.state


def set_state(state) -> None:
    _host.bit_generator.state = state


def uniform(shape, like):
    """Uniform [0, 1) numbers of `like`'s dtype, on `like`'s device."""
    global _device
    dtype = like.dtype if like.dtype.kind == "f" else np.float32
    if device.device_of(like) == "cpu":
        return _host.random(shape, dtype=dtype)
    if _device is None:
        import cupy

        _device = cupy.random.default_rng(_device_seed)
    return _device.random(shape, dtype=dtype)


def normal(shape, std, dtype=np.float32):
    """Host normal(0, std) numbers, for weight initialisation (done on the host, then moved)."""
    return (_host.standard_normal(shape, dtype=np.float32) * std).astype(dtype)
