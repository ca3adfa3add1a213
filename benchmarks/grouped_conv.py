"""Depthwise 3x3 convolution (groups == channels), forward and forward+backward, nnlite's
NumPy and Numba backends against PyTorch's grouped conv in the same run (interleaved).

    python -m benchmarks.grouped_conv [--rounds 5] [--json F] [--device cuda] [--tiny]

PyTorch is optional (`pip install 'emotion-nnlite[bench]'`): without it its column is
skipped with the reason. Shapes: the mobile model's depthwise layers at batch 64 and 1.
With --device cuda: nnlite's cuda backend (the three depthwise kernels) against PyTorch's
cuDNN on the GPU, TF32 off ("torch") and on ("torch_tf32"), every call synchronized.
--tiny: two small shapes and few repetitions, a smoke test of the script itself.
"""

import argparse
import statistics
import sys
import time

import numpy as np

import nnlite
import nnlite.functional as F
from benchmarks import cuda_sync, machine, small_simulated_launches, write_json

SHAPES = [(64, 24, 48), (64, 64, 24), (64, 128, 12), (64, 256, 6), (1, 24, 48), (1, 256, 6)]


TINY_SHAPES = [(2, 4, 6), (1, 3, 4)]


def _nnlite_side(backend, x, W, gy):
    if backend == "cuda":
        x, W, gy = (nnlite.to_device(a, "cuda") for a in (x, W, gy))

    def forward():
        nnlite.use(backend)
        with nnlite.no_grad():
            F.conv2d(nnlite.Tensor(x), W, pad=1, groups=x.shape[1])

    def step():
        nnlite.use(backend)
        xt, Wt = nnlite.Tensor(x, requires_grad=True), nnlite.Tensor(W, requires_grad=True)
        F.conv2d(xt, Wt, pad=1, groups=x.shape[1]).backward(gy)

    return forward, step


def _torch_side(x, W, gy, device="cpu", tf32=False):
    import torch

    torch.set_num_threads(1 if x.shape[0] == 1 else 2)
    xt, Wt, g = (torch.from_numpy(a).to(device) for a in (x, W, gy))

    def forward():
        torch.backends.cudnn.allow_tf32 = tf32  # (the sides take turns: each sets its own)
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, Wt, padding=1, groups=x.shape[1])

    def step():
        torch.backends.cudnn.allow_tf32 = tf32
        a, b = xt.clone().requires_grad_(), Wt.clone().requires_grad_()
        torch.nn.functional.conv2d(a, b, padding=1, groups=x.shape[1]).backward(g)

    return forward, step


def _time(fn, reps, sync):
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - start) / reps * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--tiny", action="store_true", help="small shapes, few repetitions")
    args = parser.parse_args(argv)
    try:
        import torch
        reason = None
    except ImportError:
        torch, reason = None, "PyTorch not installed"
    sync = lambda: None  # noqa: E731
    if args.device == "cuda":
        cuda_reason = nnlite.available()["cuda"]
        if cuda_reason is not None:
            print(f"--device cuda needs the cuda backend: {cuda_reason}", file=sys.stderr)
            return 2
        if torch is not None and not torch.cuda.is_available():
            torch, reason = None, "PyTorch sees no CUDA GPU"
        if not nnlite.backends.SIMULATOR:
            sync = cuda_sync(torch)
        small_simulated_launches()
    rng = np.random.default_rng(0)
    rows = []
    for n, c, hw in (TINY_SHAPES if args.tiny else SHAPES):
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        W = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
        gy = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        ours = ("cuda",) if args.device == "cuda" else ("numpy", "numba")
        sides = {b: _nnlite_side(b, x, W, gy) for b in ours}
        if reason is None and args.device == "cuda":
            sides["torch"] = _torch_side(x, W, gy, "cuda", tf32=False)
            sides["torch_tf32"] = _torch_side(x, W, gy, "cuda", tf32=True)
        elif reason is None:
            sides["torch"] = _torch_side(x, W, gy)
        reps = 1 if args.tiny else (3 if n > 1 and args.device == "cpu" else 20 if n > 1 else 50)
        times = {(s, k): [] for s in sides for k in ("forward", "step")}
        for fns in sides.values():
            fns[0](), fns[1]()  # compile, warm up
        for _ in range(args.rounds):
            for s, (forward, step) in sides.items():
                times[(s, "forward")].append(_time(forward, reps, sync))
                times[(s, "step")].append(_time(step, reps, sync))
        row = {"shape": [n, c, hw, hw]}
        row.update({f"{s} {k} ms": round(statistics.median(t), 3) for (s, k), t in times.items()})
        rows.append(row)
        print(row, flush=True)
    if reason:
        print(f"torch column skipped: {reason}")
    if args.json:
        write_json(args.json, {"machine": machine(), "run_on": args.device,
                               "torch_skipped": reason, "command": " ".join(sys.argv),
                               "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
