"""Depthwise 3x3 convolution (groups == channels), forward and forward+backward, nnlite's
NumPy and Numba backends against PyTorch's grouped conv in the same run (interleaved).

    python -m benchmarks.grouped_conv [--rounds 5] [--json F]

PyTorch is optional (`pip install 'emotion-nnlite[bench]'`): without it its column is
skipped with the reason. Shapes: the mobile model's depthwise layers at batch 64 and 1.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import nnlite
import nnlite.functional as F

SHAPES = [(64, 24, 48), (64, 64, 24), (64, 128, 12), (64, 256, 6), (1, 24, 48), (1, 256, 6)]


def _nnlite_side(backend, x, W, gy):
    def forward():
        nnlite.use(backend)
        with nnlite.no_grad():
            F.conv2d(nnlite.Tensor(x), W, pad=1, groups=x.shape[1])

    def step():
        nnlite.use(backend)
        xt, Wt = nnlite.Tensor(x, requires_grad=True), nnlite.Tensor(W, requires_grad=True)
        F.conv2d(xt, Wt, pad=1, groups=x.shape[1]).backward(gy)

    return forward, step


def _torch_side(x, W, gy):
    import torch

    torch.set_num_threads(1 if x.shape[0] == 1 else 2)
    xt, Wt, g = torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(gy)

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, Wt, padding=1, groups=x.shape[1])

    def step():
        a, b = xt.clone().requires_grad_(), Wt.clone().requires_grad_()
        torch.nn.functional.conv2d(a, b, padding=1, groups=x.shape[1]).backward(g)

    return forward, step


def _time(fn, reps):
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
        reason = None
    except ImportError:
        reason = "PyTorch not installed"
    rng = np.random.default_rng(0)
    rows = []
    for n, c, hw in SHAPES:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        W = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
        gy = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        sides = {b: _nnlite_side(b, x, W, gy) for b in ("numpy", "numba")}
        if reason is None:
            sides["torch"] = _torch_side(x, W, gy)
        reps = 3 if n > 1 else 50
        times = {(s, k): [] for s in sides for k in ("forward", "step")}
        for fns in sides.values():
            fns[0](), fns[1]()  # compile, warm up
        for _ in range(args.rounds):
            for s, (forward, step) in sides.items():
                times[(s, "forward")].append(_time(forward, reps))
                times[(s, "step")].append(_time(step, reps))
        row = {"shape": [n, c, hw, hw]}
        row.update({f"{s} {k} ms": round(statistics.median(t), 3) for (s, k), t in times.items()})
        rows.append(row)
        print(row, flush=True)
    if reason:
        print(f"torch column skipped: {reason}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
