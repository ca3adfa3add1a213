"""The CUDA backend on a machine without a GPU.

The GPU suite is the CPU suite re-run: tests/test_backends.py runs again, in a process of its
own, under Numba's CUDA simulator with the cuda backend selected (the variables must be set
before Numba is first imported), so that every kernel check and gradient check runs on the
CUDA kernels, on NumPy arrays, on the tiny cases of tests/cases.py. And asking for the backend
here fails with a reason instead of a traceback. What needs a real GPU: tests/test_cuda_gpu.py.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import nnlite
from nnlite import backends
from tests.conftest import REPO

CUDA_REASON = backends.available()["cuda"]


def test_the_backend_suite_passes_on_the_cuda_kernels_under_the_simulator(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NNLITE_BACKEND="cuda")
    env.pop("NUMBA_DISABLE_JIT", None)
    report = tmp_path / "simulator.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "tests/test_backends.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    output = proc.stdout + proc.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else "(no output)"
    print(f"tests/test_backends.py under the CUDA simulator: {summary}")
    assert proc.returncode == 0, f"the backend suite failed under the simulator:\n{output[-8000:]}"
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == 0, (counts, summary)
    assert counts["tests"] - counts["skipped"] >= 200, (counts, summary)  # it ran, on every case
    names = [case.get("name") for case in suite.iter("testcase")]
    on_cuda = [name for name in names if "[cuda" in name]
    # every parametrized test ran on the cuda backend alone (the rest is the kernel contract)
    assert len(on_cuda) >= len(names) - 2, [name for name in names if "[cuda" not in name]


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
