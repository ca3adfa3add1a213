"""Shared test fixtures: where the shared data lives, and a clean nnlite state per test."""

import os
from pathlib import Path

import numpy as np
import pytest

import nnlite
from nnlite import backends

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FER2013_CSV = SHARED_DATA / "fer2013" / "fer2013.csv.gz"
MEDIA = SHARED_DATA / "media"

# How close a backend's result must be to the NumPy specification, relative to the largest
# |value| of the expected array (one table for every backend suite: CPU, simulator, GPU).
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


def close_enough(dtype):
    """The same tolerance as rtol/atol keywords, for elementwise assert_allclose checks."""
    return dict(rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] / 10)


def assert_matches(expected, got, dtype):
    got_host = backends.to_numpy(got)
    assert got_host.dtype == np.dtype(dtype), f"dtype {got_host.dtype}, expected {np.dtype(dtype)}"
    assert got_host.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1e-30) if expected.size else 1.0
    np.testing.assert_allclose(got_host, expected, rtol=0, atol=TOLERANCE[dtype] * scale)


# Under Numba's CUDA simulator (tests/test_cuda_sim.py runs tests/test_backends.py so) every
# GPU thread runs in Python: the tests take their tiny cases only.
SIMULATOR = backends.SIMULATOR


def tiny_under_simulator(tiny, larger=()):
    """A test's cases: all of them on real hardware, only the `tiny` ones under the simulator."""
    return list(tiny) if SIMULATOR else list(tiny) + list(larger)


@pytest.fixture(autouse=True, scope="session")
def _simulator_launches():
    """Under the simulator, 32-thread blocks and at most 3 of them (16 threads for the
    per-channel sums): fast to simulate, and on the tiny cases every grid-stride loop still
    goes round several times."""
    if not SIMULATOR:
        yield
        return
    from nnlite.backends import cuda_kernels

    assert cuda_kernels.SIMULATOR, "NUMBA_ENABLE_CUDASIM was set after Numba was imported"
    saved = cuda_kernels.THREADS, cuda_kernels.MAX_BLOCKS, cuda_kernels.REDUCE_THREADS
    cuda_kernels.THREADS, cuda_kernels.MAX_BLOCKS, cuda_kernels.REDUCE_THREADS = 32, 3, 16
    yield
    cuda_kernels.THREADS, cuda_kernels.MAX_BLOCKS, cuda_kernels.REDUCE_THREADS = saved


needs_numba = pytest.mark.skipif(backends.available()["numba"] is not None,
                                 reason=f"needs the numba backend: {backends.available()['numba']}")


@pytest.fixture(autouse=True)
def _restore_backend():
    """Each test starts on the backend the session started with, seeded."""
    previous = nnlite.current()
    nnlite.seed(0)
    yield
    nnlite.use(previous)
