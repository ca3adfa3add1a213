"""Benchmarks: kernels, training steps and the face pipeline, with measured figures in
RESULTS.md.

    python -m benchmarks.kernels     per kernel x backend x batch
    python -m benchmarks.train_step  per net x backend: inference and one training step,
                                     against PyTorch in the same run when it is installed
    python -m benchmarks.profile_step  one training step split by kernel: where the time goes
    python -m benchmarks.pipeline    frames/s of the whole face pipeline
    python -m benchmarks.peers       `emotion video --csv` against MediaPipe's face mesh and fer's
                                     pipeline (each in its own venv, skipped with the reason
                                     without it) on every shared clip and the GT clips
    python -m benchmarks.gt_clips    ground-truth clips from the shared photos (data/gt_clips)
    python -m benchmarks.gt_score    recall, false boxes, ID switches of a --csv against a GT clip
    python -m benchmarks.launch_overhead  (GPU) what one launch costs the host, CuPy vs Numba
    bash benchmarks/gpu_checks.sh    (GPU) every GPU check and benchmark in one run, for a
                                     session that has a GPU briefly: one archive and a summary;
                                     it refuses to run without a real GPU (--dry-run: simulator)
    python -m benchmarks.gpu_env     the versions and the device it checks first

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
    queued: a GPU runs asynchronously, so a clock read without it times only the launches.
    (Under the CUDA simulator, a dry run, there is nothing to wait for.)"""
    from nnlite import backends

    if backends.SIMULATOR:
        return lambda: None
    import cupy

    def sync():
        cupy.cuda.Device().synchronize()
        if torch is not None:
            torch.cuda.synchronize()

    return sync


def small_simulated_launches():
    """Under Numba's CUDA simulator (a dry run), the CUDA kernels' launches shrunk as the tests
    shrink them (tests/conftest.py): each simulated thread is a Python thread, and 512-thread
    blocks would make a smoke test take minutes. Nothing changes on a GPU."""
    from nnlite import backends

    if backends.SIMULATOR:
        from nnlite.backends import cuda_kernels

        cuda_kernels.THREADS, cuda_kernels.MAX_BLOCKS, cuda_kernels.REDUCE_THREADS = 32, 3, 16


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


def _version(*distributions):
    """The installed version of the first of `distributions` found, else None (read from the
    package metadata: nothing is imported)."""
    from importlib import metadata

    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


CUPY_DISTRIBUTIONS = ("cupy-cuda13x", "cupy-cuda12x", "cupy")


def device() -> dict:
    """The device a figure was measured on, for every JSON (write_json adds it): the GPU's name,
    driver and CUDA runtime when CuPy is already loaded (a CPU-only run never imports it), and
    the versions of CuPy, Numba, numba-cuda and PyTorch, with PyTorch's CUDA, cuDNN and TF32
    settings when it is loaded. gpu is None for a run that used no GPU."""
    import sys

    record = {"gpu": None, "driver": None, "driver_cuda": None, "cuda_runtime": None,
              "cupy": _version(*CUPY_DISTRIBUTIONS), "numba": _version("numba"),
              "numba_cuda": _version("numba-cuda"), "torch": _version("torch"),
              "cuda_simulator": os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")}
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            runtime = cupy.cuda.runtime
            record["gpu"] = runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
            record["driver"] = _nvidia_driver_release()
            record["driver_cuda"] = _cuda_version(runtime.driverGetVersion())  # the most it runs
            record["cuda_runtime"] = _cuda_version(runtime.runtimeGetVersion())
        except Exception as err:  # a figure is still worth keeping; say why the record is short
            record["gpu_error"] = f"{type(err).__name__}: {err}"
    torch = sys.modules.get("torch")
    if torch is not None:
        record["torch_cuda"] = torch.version.cuda
        cudnn = torch.backends.cudnn
        record["torch_cudnn"] = cudnn.version() if cudnn.is_available() else None
        record["torch_tf32"] = {"cudnn": cudnn.allow_tf32,
                                "matmul": torch.backends.cuda.matmul.allow_tf32}
    return record


def _cuda_version(number):
    """CUDA's integer version (12040) as text ("12.4")."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _nvidia_driver_release():
    """The driver's own release ("580.159.04"), from the kernel module, or None."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            words = f.readline().split()
    except OSError:
        return None
    return next((w for w in words if w.count(".") >= 1 and w.replace(".", "").isdigit()), None)


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
    """payload with the device it was measured on (device()) as JSON, written atomically: a
    reader never sees half a file, and a run killed while writing leaves the old one."""
    if "device" in payload:
        raise ValueError("write_json adds the 'device' record itself")
    payload = {"device": device(), **payload}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    print(f"wrote {path}")
