"""Time every kernel, per backend and batch size, on the shapes of the emotion nets.

    python -m benchmarks.kernels [--backends numpy,numba] [--batches 1,64] [--reps 5]
                                 [--threads 2] [--json PATH] [--device cuda]

Backends run interleaved (numpy, numba, numpy, numba, ...) and the table gives the median
milliseconds of each and the speed-up over NumPy.
"""

import argparse
import sys

import numpy as np

import nnlite
from benchmarks import machine, print_table, set_threads, time_interleaved, write_json
from nnlite import backends


def cases(batch, rng):
    """(name, function of the kernel module and an array mover) on the nets' real shapes."""
    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x32 = arr(batch, 32, 48, 48)          # compact: after the first conv
    x64 = arr(batch, 64, 48, 48)          # seed: after the first conv
    col = arr(288, batch * 48 * 48)
    gy24 = arr(batch, 64, 24, 24)
    params = [arr(3072, 18432 // 8), arr(3072, 18432 // 8), arr(3072, 18432 // 8)]
    pooled = np.random.default_rng(0).permutation(x64.size).reshape(x64.shape).astype(np.float32)
    argmax = backends.kernels_for(pooled).max_pool_forward(pooled, 3, 3, (2, 2), (0, 1, 0, 1))[1]
    lrn_y, lrn_scale = backends.kernels_for(x64).lrn_forward(x64, 11, 1.1e-3, 0.75, 1.0)
    mean, var = backends.kernels_for(x32).batch_norm_stats(x32)
    inv_std = backends.kernels_for(x32).batch_norm_forward(x32, np.ones(32, np.float32), np.zeros(32, np.float32),
                                                           mean, var, 1e-5)[1]
    w32 = arr(32, 32, 3, 3)
    return [
        ("conv2d fwd 3x3 32->32 (N,32,48,48)", lambda k, d: lambda: k.conv2d_forward(d(x32), d(w32), (1, 1), (1, 1, 1, 1))),
        ("conv2d bwd 3x3 32->32", lambda k, d: lambda: k.conv2d_backward(d(x32), d(x32), d(w32), (1, 1), (1, 1, 1, 1))),
        ("im2col 3x3 (N,32,48,48)", lambda k, d: lambda: k.im2col(d(x32), 3, 3, (1, 1), (1, 1, 1, 1))),
        ("col2im 3x3 (N,32,48,48)", lambda k, d: lambda: k.col2im(d(col), x32.shape, 3, 3, (1, 1), (1, 1, 1, 1))),
        ("max_pool fwd 2x2 (N,32,48,48)", lambda k, d: lambda: k.max_pool_forward(d(x32), 2, 2, (2, 2), (0, 0, 0, 0))),
        ("max_pool fwd 3x3s2 same (N,64,48,48)", lambda k, d: lambda: k.max_pool_forward(d(x64), 3, 3, (2, 2), (0, 1, 0, 1))),
        ("max_pool bwd 3x3s2 same", lambda k, d: lambda: k.max_pool_backward(d(gy24), d(argmax), x64.shape, 3, 3, (2, 2), (0, 1, 0, 1))),
        ("lrn fwd size 11 (N,64,48,48)", lambda k, d: lambda: k.lrn_forward(d(x64), 11, 1.1e-3, 0.75, 1.0)),
        ("lrn bwd size 11", lambda k, d: lambda: k.lrn_backward(d(x64), d(x64), d(lrn_y), d(lrn_scale), 11, 1.1e-3, 0.75, 1.0)),
        ("batch_norm stats (N,32,48,48)", lambda k, d: lambda: k.batch_norm_stats(d(x32))),
        ("batch_norm fwd", lambda k, d: lambda: k.batch_norm_forward(d(x32), *(d(np.full(32, v, np.float32)) for v in (1, 0, 0, 1)), 1e-5)),
        ("batch_norm bwd (train)", lambda k, d: lambda: k.batch_norm_backward(d(x32), d(x32), d(mean), d(np.ones(32, np.float32)), d(inv_std), True)),
        ("relu fwd (N,32,48,48)", lambda k, d: lambda: k.relu_forward(d(x32))),
        ("relu bwd", lambda k, d: lambda: k.relu_backward(d(x32), d(x32))),
        ("softmax CE fwd (N,7)", lambda k, d: lambda: k.softmax_cross_entropy_forward(d(arr(batch, 7)), d(np.zeros(batch, np.int64)), d(np.ones(batch, np.float32)), 0.0)),
        ("dropout mask (N,128,12,12)", lambda k, d: lambda: k.dropout_mask((batch, 128, 12, 12), 0.7, np.float32, d(x32))),
        ("sgd update 7.1M params", lambda k, d: lambda: k.sgd_update(d(params[0]), d(params[1]), d(params[2]), 1e-3, 0.9, 0.0, False)),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=None, help="default numpy,numba (or cuda with --device cuda)")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    names = (args.backends or ("numpy,cuda" if args.device == "cuda" else "numpy,numba")).split(",")
    names = [n for n in names if nnlite.available()[n] is None or print(f"skipping {n}: {nnlite.available()[n]}")]
    sync = None
    if "cuda" in names:
        import cupy

        sync = cupy.cuda.Device().synchronize
    print(f"threads: {threads}   machine: {machine()}")
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for name, make in cases(batch, np.random.default_rng(0)):
            functions = {}
            for backend in names:
                nnlite.use("numba" if backend == "numba" else "numpy")
                device = "cuda" if backend == "cuda" else "cpu"
                module = __import__(f"nnlite.backends.{backend}_kernels", fromlist=["x"])
                # arrays are moved before timing: the cases hold host arrays
                functions[backend] = make(module, _mover(device))
            medians = time_interleaved(functions, args.reps, sync=sync)
            row = {"kernel": name, "batch": batch}
            for backend, seconds in medians.items():
                row[f"{backend}_ms"] = seconds * 1e3
            for backend in names:
                if backend != "numpy" and "numpy" in medians:
                    row[f"{backend}_speedup"] = medians["numpy"] / medians[backend]
            rows.append(row)
            print(f"  {name:38s} b{batch:<3d} " + "  ".join(f"{b} {medians[b]*1e3:8.2f} ms" for b in names), flush=True)
    columns = [("kernel", "kernel", "{}"), ("batch", "batch", "{}")]
    columns += [(f"{b}_ms", f"{b} ms", "{:.2f}") for b in names]
    columns += [(f"{b}_speedup", f"x numpy ({b})", "{:.1f}") for b in names if b != "numpy"]
    print()
    print_table(rows, columns)
    if args.json:
        write_json(args.json, {"machine": machine(), "threads": threads, "command": " ".join(sys.argv), "rows": rows})
    return 0


def _mover(device):
    cache = {}

    def move(array):
        if device == "cpu":
            return array
        if id(array) not in cache:
            cache[id(array)] = (array, backends.to_device(array, device))
        return cache[id(array)][1]

    return move


if __name__ == "__main__":
    raise SystemExit(main())
