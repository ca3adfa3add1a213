"""Benchmarks: kernels, training steps and the face pipeline, with measured figures in
RESULTS.md.

    python -m benchmarks.kernels     per kernel x backend x batch
    python -m benchmarks.train_step  per net x backend: inference and one training step,
                                     against PyTorch in the same run when it is installed
    python -m benchmarks.profile_step  one training step split by kernel: where the time goes
    python -m benchmarks.pipeline    frames/s of the whole face pipeline
    python -m benchmarks.launch_overhead  (GPU) what one launch costs the host, CuPy vs Numba
    bash benchmarks/gpu_checks.sh    (GPU) every GPU check and benchmark in one run, logs and
                                     JSON into one folder, for a session that has a GPU briefly

This module holds what they share: thread control (every library gets the same number of
threads, or a comparison means nothing), interleaved timing, the table and the JSON.
"""

import ctypes
import glob
import json
import os
import platform
import statistics
import time

import numpy as np


def optional_torch():
    """PyTorch if it is installed, else None (it is a benchmark reference, not a dependency)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _openblas_library():
    """NumPy's own OpenBLAS (already loaded by `import numpy`), for its thread setter."""
    here = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/*openblas*", "../scipy_openblas64/lib/*.so*", ".libs/*openblas*"):
        for path in glob.glob(os.path.join(here, pattern)):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def set_threads(n: int, torch=None) -> dict:
    """Use n threads in Numba, NumPy's OpenBLAS and PyTorch. Returns what each got."""
    import numba

    got = {"numba": None, "openblas": None, "torch": None}
    numba.set_num_threads(n)
    got["numba"] = numba.get_num_threads()
    library = _openblas_library()
    for suffix in ("64_", "_64_", ""):
        setter = getattr(library, f"scipy_openblas_set_num_threads{suffix}", None) if library else None
        setter = setter or (getattr(library, f"openblas_set_num_threads{suffix}", None) if library else None)
        getter = getattr(library, f"scipy_openblas_get_num_threads{suffix}", None) if library else None
        if setter is not None:
            setter(ctypes.c_int(n))
            got["openblas"] = getter() if getter is not None else n
            break
    if torch is not None:
        torch.set_num_threads(n)
        got["torch"] = torch.get_num_threads()
    return got


def cuda_sync(torch=None):
    """A function that waits until the GPU has finished what CuPy (and, given torch, PyTorch)
    queued: a GPU runs asynchronously, so a clock read without it times only the launches."""
    import cupy

    def sync():
        cupy.cuda.Device().synchronize()
        if torch is not None:
            torch.cuda.synchronize()

    return sync


def time_interleaved(functions: dict, reps: int, warmup: int = 2, sync=None, settle: float = 0.0,
                     repeats: dict = None) -> dict:
    """Median seconds of each function, run alternately (a, b, a, b, ...) so that the noise of
    a shared machine lands on all of them alike. `sync` is called before reading the clock
    (a GPU is asynchronous).

    `settle`: seconds to sleep before each timed call. After a call, OpenMP's (PyTorch's) and
    OpenBLAS's worker threads spin-wait for a while before they sleep, and on a small CPU they
    take the cores from whatever runs next: without a pause, each side is timed partly
    against the other's spinning threads.

    `repeats`: name -> timed calls per round (default 1), so that fast functions get as many
    samples as usual while a slow one runs only a few times, all in the same minutes.
    """
    sync = sync or (lambda: None)
    repeats = repeats or {}
    for _ in range(warmup):
        for fn in functions.values():
            fn()
            sync()
    times = {name: [] for name in functions}
    for _ in range(reps):
        for name, fn in functions.items():
            for _ in range(repeats.get(name, 1)):
                sync()
                if settle:
                    time.sleep(settle)
                start = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def machine() -> dict:
    """What the numbers were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": os.getloadavg()}


def print_table(rows, columns):
    """rows: list of dicts; columns: list of (key, header, format)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(key) is None else fmt.format(row[key])) for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for k, r in enumerate(cells):
        print("  ".join(c.rjust(w) if k and i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {path}")
