"""nnlite.keep_freed_memory: malloc settings that keep a training step's memory for the next."""

import ctypes.util
import subprocess
import sys

import pytest

import nnlite


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="mallopt is a glibc (Linux) function")
def test_keep_freed_memory_applies_on_glibc():
    # In a child process: the settings are process-wide and should not leak into other tests.
    code = ("import nnlite, numpy as np\n"
            "assert nnlite.keep_freed_memory() is True\n"
            "for _ in range(3):\n"
            "    a = np.ones((64, 32, 48, 48), np.float32); assert float(a.sum()) == a.size; del a\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_keep_freed_memory_returns_a_bool(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert nnlite.keep_freed_memory() is False  # elsewhere it changes nothing and says so
