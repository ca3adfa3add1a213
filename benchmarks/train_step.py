"""Inference and training-step time of the emotion nets, per backend, against PyTorch.

    python -m benchmarks.train_step [--backends numpy,numba] [--nets compact,seed]
                                    [--reps 10] [--threads 2] [--settle 0.2] [--json PATH]
                                    [--device cuda] [--torch-tf32 off|on|both]
                                    [--batch 64] [--image-size 48]

For each net and backend:
    infer b1    forward of one image, eval mode, no graph (the live-camera case)
    infer b64   the same for a batch of 64
    train b64   forward (train mode), softmax cross-entropy, backward, MomentumSGD step
Every backend and, when PyTorch is installed, the same net in PyTorch (benchmarks/torch_nets.py,
same weights, same number of threads) run in the same process, interleaved rep by rep (numpy,
numba, torch, numpy, numba, torch, ...), so that a machine that speeds up or slows down during
the run moves all of them alike; the table gives each median time, our time / PyTorch's and the
speed-up over the numpy backend, all from the same interleaved run. A case in which the numpy
backend runs a batch of 64 takes it 1-3 s a step, so in those cases numpy runs --numpy-reps
times and the other sides run several times in each of its rounds, --reps times or more in all.
On the CPU each timed call starts after a --settle pause (0.2 s), so that no side is timed
against another's still-spinning worker threads. With --device cuda our "cuda" backend runs against PyTorch on the GPU
(cuDNN), both synchronized before the clock is read. PyTorch's cuDNN convolutions use TF32 by
default, float32 inputs rounded to a 10-bit mantissa: the comparison runs PyTorch with TF32 off
(float32 against float32, the "torch" columns), and with --torch-tf32 both (the default on the
GPU) also with TF32 on, interleaved in the same run ("torch tf32"), to show what the default
costs us. --batch and --image-size shrink a run to a smoke test (the nets but seed pool
globally, so any size that survives their halvings works: 16 for mobile, 8 for compact/wide).
"""

import argparse
import sys
import warnings

import numpy as np

import nnlite
from benchmarks import (cuda_sync, machine, optional_torch, print_table, set_threads,
                        small_simulated_launches, time_interleaved, write_json)
from emotion.cnn.models import build
from nnlite import optim
from nnlite.autograd import Tensor, no_grad
import nnlite.functional as F

# PyTorch's padding="same" with an even kernel warns that it pads a copy (it does, like we do).
warnings.filterwarnings("ignore", message="Using padding='same'")


def our_step_functions(name, backend, device, infer_batches=(1, 64), train_batch=64, size=48):
    """(model, {case: zero-argument callable running our net}), cases "infer b<N>" for each of
    infer_batches and "train b<train_batch>"."""
    nnlite.use(backend)
    nnlite.seed(0)
    model = build(name).to(device)
    rng = np.random.default_rng(0)
    optimizer = optim.MomentumSGD(model.parameters(), lr=1e-3, momentum=0.9)
    inputs = {b: nnlite.to_device(rng.standard_normal((b, 1, size, size)).astype(np.float32), device)
              for b in dict.fromkeys((*infer_batches, train_batch))}
    labels = nnlite.to_device(rng.integers(0, 7, train_batch), device)

    def infer(batch):
        def run():
            model.eval()
            with no_grad():
                model(Tensor(inputs[batch]))
        return run

    def train():
        model.train()
        optimizer.zero_grad()
        loss = F.softmax_cross_entropy(model(Tensor(inputs[train_batch])), labels)
        loss.backward()
        optimizer.step()

    return model, {**{f"infer b{b}": infer(b) for b in infer_batches}, f"train b{train_batch}": train}


def on_backend(backend, fn):
    """fn run with `backend` selected: the backends' functions take turns in one timing loop,
    and an op on NumPy arrays runs the kernels of whichever of numpy/numba is selected."""
    def run():
        nnlite.use(backend)
        fn()
    return run


def set_tf32(torch, on):
    """TF32 in PyTorch's cuDNN convolutions and cuBLAS matrix products, on or off."""
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def with_tf32(torch, on, functions):
    """The functions, each setting TF32 first: two PyTorch sides take turns in one run."""
    def wrap(fn):
        def run():
            set_tf32(torch, on)
            fn()
        return run
    return {case: wrap(fn) for case, fn in functions.items()}


def torch_step_functions(torch, name, ours, device, batch=64, size=48):
    from benchmarks import torch_nets

    model = torch_nets.copy_weights(torch, torch_nets.build(torch, name), ours).to(device)
    rng = np.random.default_rng(0)
    inputs = {b: torch.from_numpy(rng.standard_normal((b, 1, size, size)).astype(np.float32)).to(device)
              for b in (1, batch)}
    labels = torch.from_numpy(rng.integers(0, 7, batch)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def infer(batch):
        def run():
            model.eval()
            with torch.no_grad():
                model(inputs[batch])
        return run

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs[batch]), labels).backward()
        optimizer.step()

    return {"infer b1": infer(1), f"infer b{batch}": infer(batch), f"train b{batch}": train}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=None,
                        help="comma-separated; default numpy,numba (cpu) or cuda (--device cuda)")
    parser.add_argument("--nets", default="compact,seed")
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions (median)")
    parser.add_argument("--numpy-reps", type=int, default=5,
                        help="repetitions of the numpy backend where it runs a batch of 64 (the "
                             "other sides still get --reps, timed in between)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of pause before each timed call, so that the other side's "
                             "spinning worker threads have gone to sleep (default 0.2 on the CPU, "
                             "0 on the GPU; 0 = back to back)")
    parser.add_argument("--torch-tf32", default=None, choices=("off", "on", "both"),
                        help="PyTorch's TF32 (GPU): off, on, or both sides interleaved (default "
                             "both with --device cuda)")
    parser.add_argument("--batch", type=int, default=64, help="the batch of 'infer' and 'train'")
    parser.add_argument("--image-size", type=int, default=48, help="input side, pixels")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    tf32 = args.torch_tf32 or ("both" if args.device == "cuda" else "off")
    settle = args.settle if args.settle is not None else (0.2 if args.device == "cpu" else 0.0)

    torch = None if args.no_torch else optional_torch()
    if torch is None and not args.no_torch:
        print("PyTorch is not installed: timing nnlite only (pip install torch for the comparison)")
    threads = set_threads(args.threads, torch)
    nnlite.keep_freed_memory()  # what emotion train does; PyTorch's tensors (malloc too) gain alike
    backends = (args.backends or ("cuda" if args.device == "cuda" else "numpy,numba")).split(",")
    sync = None
    if args.device == "cuda":
        reason = nnlite.available()["cuda"]
        if reason is not None:
            print(f"--device cuda needs the cuda backend: {reason}", file=sys.stderr)
            return 2
        sync = cuda_sync(torch)
        small_simulated_launches()
    print(f"threads: {threads}   device: {args.device}   settle: {settle} s   machine: {machine()}")

    rows = []
    for name in args.nets.split(","):
        sides, model = {}, None  # side -> {case: function}, the sides timed against each other
        for backend in backends:
            reason = nnlite.available()[backend]
            if reason is not None:
                print(f"skipping backend {backend}: {reason}")
                continue
            built, functions = our_step_functions(name, backend, args.device,
                                                  train_batch=args.batch, size=args.image_size,
                                                  infer_batches=(1, args.batch))
            if model is None:  # every backend's model starts from the same weights (seed 0)
                model = built
            sides[backend] = functions
        if not sides:
            continue
        if len(sides) > 1:  # numpy and numba share NumPy arrays: select each one's kernels
            sides = {backend: {case: on_backend(backend, fn) for case, fn in functions.items()}
                     for backend, functions in sides.items()}
        if torch is not None:
            functions = torch_step_functions(torch, name, model, args.device, args.batch,
                                             args.image_size)
            if args.device == "cuda" and tf32 in ("off", "both"):
                sides["torch"] = with_tf32(torch, False, functions)
            elif args.device == "cuda":
                sides["torch"] = with_tf32(torch, True, functions)
            else:
                sides["torch"] = functions
            if args.device == "cuda" and tf32 == "both":
                sides["torch_tf32"] = with_tf32(torch, True, functions)
        for case in next(iter(sides.values())):
            slow = "numpy" in sides and case != "infer b1"
            rounds = min(args.numpy_reps, args.reps) if slow else args.reps
            per_round = -(-args.reps // rounds)  # the fast sides' calls per numpy call
            repeats = {side: 1 if side == "numpy" else per_round for side in sides}
            medians = time_interleaved({side: cases[case] for side, cases in sides.items()}, rounds,
                                       warmup=1 if slow else 2, sync=sync, settle=settle,
                                       repeats=repeats)
            for backend in (side for side in sides if not side.startswith("torch")):
                row = {"net": name, "backend": backend, "case": case,
                       "reps": rounds * repeats[backend], "ours_ms": medians[backend] * 1e3}
                if "torch" in medians:
                    row["torch_ms"] = medians["torch"] * 1e3
                    row["ratio"] = medians[backend] / medians["torch"]
                if "torch_tf32" in medians:
                    row["torch_tf32_ms"] = medians["torch_tf32"] * 1e3
                    row["ratio_tf32"] = medians[backend] / medians["torch_tf32"]
                if "numpy" in medians:
                    row["speedup_vs_numpy"] = medians["numpy"] / medians[backend]
                rows.append(row)
                print(f"  {name:8s} {backend:6s} {case:10s} ours {row['ours_ms']:9.2f} ms"
                      + (f"   torch {row['torch_ms']:9.2f} ms   ratio {row['ratio']:.2f}"
                         if "ratio" in row else ""), flush=True)
    print()
    print_table(rows, COLUMNS)
    if args.json:
        write_json(args.json, {"machine": machine(), "threads": threads, "run_on": args.device,
                               "settle_s": settle,
                               "torch": torch.__version__ if torch else None,
                               "torch_tf32": tf32 if torch and args.device == "cuda" else None,
                               "batch": args.batch, "image_size": args.image_size,
                               "command": " ".join(sys.argv), "rows": rows})
    return 0


COLUMNS = [("net", "net", "{}"), ("backend", "backend", "{}"), ("case", "case", "{}"),
           ("reps", "reps", "{}"), ("ours_ms", "ours ms", "{:.2f}"),
           ("torch_ms", "torch ms", "{:.2f}"), ("ratio", "ours/torch", "{:.2f}"),
           ("torch_tf32_ms", "torch tf32 ms", "{:.2f}"), ("ratio_tf32", "ours/tf32", "{:.2f}"),
           ("speedup_vs_numpy", "x numpy", "{:.1f}")]

if __name__ == "__main__":
    raise SystemExit(main())
