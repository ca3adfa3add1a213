"""What a launch costs the host, on the GPU: the figure that decides how the CUDA backend is
written while a training step is bound by launches rather than by arithmetic.

    python -m benchmarks.launch_overhead [--reps 2000] [--json PATH]

Part 1, one launch on a tiny array (so that the GPU's own work is ~nothing): microseconds per
call, measured two ways over --reps calls:
    issued   the calls back to back, one synchronize at the end: the host's cost per launch
             (the GPU runs them while the host issues the next)
    synced   a synchronize after every call: the round trip, launch latency included
The rows are a CuPy elementwise op and a CuPy reduction (what an `xp` expression costs per
operator), a Numba CUDA kernel launched through cuda_kernels' launcher with 2 and with 9 array
arguments (Numba converts each CuPy array and packs its shape and strides, so the cost grows
with the arguments), and that conversion alone (`cuda.as_cuda_array`).

Part 2, batch norm of one compact-net layer (64 x 32 x 48 x 48, float32), forward with the
ReLU and backward, both ways on the same arrays, interleaved: the NumPy reference's expressions
on CuPy arrays (~26 CuPy launches) against cuda_kernels' Numba kernels (4 launches). Each call
is synchronized, so this is the time a training step spends on it.

Needs a CUDA GPU with CuPy and Numba CUDA; elsewhere it says why and exits with status 2.
"""

import argparse
import statistics
import sys
import time

import numpy as np

import nnlite
from benchmarks import cuda_sync, machine, print_table, write_json


def per_call_us(fn, reps, sync, synced):
    """Microseconds per call of fn: the 20th percentile of 5 rounds of `reps` calls."""
    rounds = []
    for _ in range(5):
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
            if synced:
                sync()
        sync()
        rounds.append((time.perf_counter() - start) / reps * 1e6)
    return sorted(rounds)[1]


def launch_rows(cp, ck, reps, sync):
    from numba import cuda

    a, b = cp.ones(256, dtype=cp.float32), cp.ones(256, dtype=cp.float32)
    x = cp.ones((2, 2, 8), dtype=cp.float32)  # batch norm's (N, C, HW) view, 32 values
    c1 = cp.ones(2, dtype=cp.float32)
    out, out_x = cp.empty_like(a), cp.empty_like(x)
    t = np.float32
    cases = {
        "cupy a + b (elementwise)": lambda: a + b,
        "cupy x.sum(axis=(0, 2)) (reduction)": lambda: x.sum(axis=(0, 2)),
        "numba kernel, 2 arrays + 3 scalars (dropout mask)":
            lambda: ck._launch(ck._dropout_mask_kernel, a.size, a, out, t(0.5), t(2), t(0)),
        "numba kernel, 9 arrays + 4 scalars (batch norm gx)":
            lambda: ck._launch(ck._batch_norm_backward_kernel, x.size, x, x, c1, c1, c1, c1, c1,
                               c1, True, t(1 / 32), True, t(0), out_x),
        "cuda.as_cuda_array(a, sync=False) alone": lambda: cuda.as_cuda_array(a, sync=False),
    }
    rows = []
    for name, fn in cases.items():
        fn()  # compile / load before timing
        rows.append({"case": name, "issued_us": per_call_us(fn, reps, sync, False),
                     "synced_us": per_call_us(fn, max(reps // 4, 10), sync, True)})
    return rows


def batch_norm_rows(cp, ck, reps, sync):
    from nnlite.backends import numpy_kernels as reference

    rng = np.random.default_rng(0)
    shape = (64, 32, 48, 48)
    x, gy = (cp.asarray(rng.standard_normal(shape, dtype=np.float32)) for _ in range(2))
    gamma = cp.asarray(rng.uniform(0.5, 1.5, shape[1]).astype(np.float32))
    beta = cp.asarray(rng.standard_normal(shape[1]).astype(np.float32))

    def step(kernels):
        def run():
            mean, var = kernels.batch_norm_stats(x)
            y, inv_std = kernels.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)
            kernels.batch_norm_backward(gy, x, mean, gamma, inv_std, True, beta)
        return run

    sides = {"reference expressions on CuPy": step(reference), "cuda_kernels (Numba CUDA)": step(ck)}
    for run in sides.values():
        run()
    times = {name: [] for name in sides}
    for _ in range(reps):
        for name, run in sides.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append((time.perf_counter() - start) * 1e6)
    return [{"case": f"batch norm + ReLU, forward and backward, {shape}: {name}",
             "synced_us": statistics.median(values)} for name, values in times.items()]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.launch_overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000, help="calls per round in part 1")
    parser.add_argument("--bn-reps", type=int, default=50, help="interleaved rounds in part 2")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    reason = nnlite.available()["cuda"]
    if reason is not None:
        print(f"launch_overhead needs the cuda backend: {reason}", file=sys.stderr)
        return 2
    import cupy as cp

    from nnlite.backends import cuda_kernels as ck

    sync = cuda_sync()
    rows = launch_rows(cp, ck, args.reps, sync) + batch_norm_rows(cp, ck, args.bn_reps, sync)
    gpu = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"GPU: {gpu}   host: {machine()}")
    print_table(rows, [("case", "case", "{}"), ("issued_us", "issued us/call", "{:.1f}"),
                       ("synced_us", "synced us/call", "{:.1f}")])
    if args.json:
        write_json(args.json, {"machine": machine(), "gpu": gpu, "command": " ".join(sys.argv),
                               "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
