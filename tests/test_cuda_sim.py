"""The CUDA backend on a machine without a GPU.

Its kernels run under Numba's CUDA simulator against the NumPy reference
(tests/cuda_sim_checks.py, in a subprocess: NUMBA_ENABLE_CUDASIM must be set before Numba is
first imported), and asking for the backend here fails with a reason instead of a traceback.
The same kernels on a real GPU are tested in tests/test_cuda_gpu.py.
"""

import os
import subprocess
import sys

import pytest

import nnlite
from nnlite import backends
from tests.conftest import REPO

CUDA_REASON = backends.available()["cuda"]


def test_cuda_kernels_match_numpy_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NNLITE_BACKEND="numpy")
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cuda_sim_checks"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, f"simulator checks failed:\n{output}"
    assert not any(line.startswith("FAIL") for line in lines), output
    assert sum(line.startswith("ok ") for line in lines) >= 40, output
    assert lines and lines[-1].split()[1:3] == ["passed,", "0"], output


@pytest.mark.skipif(CUDA_REASON is None, reason="a usable GPU is present here")
def test_use_cuda_without_a_gpu_says_why():
    with pytest.raises(backends.BackendError) as info:
        nnlite.use("cuda")
    message = str(info.value)
    assert message.startswith("backend 'cuda' is not available: ")
    assert CUDA_REASON in message
    assert "\n" not in message and "Traceback" not in message
    assert nnlite.current() != "cuda"


def test_available_gives_a_reason_string_for_cuda():
    reasons = nnlite.available()
    assert set(reasons) == {"numpy", "numba", "cuda"}
    assert reasons["numpy"] is None
    if CUDA_REASON is not None:
        assert isinstance(reasons["cuda"], str) and len(reasons["cuda"]) > 10
        assert reasons["cuda"].rstrip(".") and "\n" not in reasons["cuda"]


@pytest.mark.skipif(CUDA_REASON is None, reason="a usable GPU is present here")
def test_moving_data_to_the_gpu_without_one_says_why():
    import numpy as np

    with pytest.raises(backends.BackendError, match="cannot move data to the GPU"):
        nnlite.Tensor(np.zeros(3, np.float32)).to("cuda")
