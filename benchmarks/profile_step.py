"""Where the time of one training step (or one inference) goes, kernel by kernel.

    python -m benchmarks.profile_step [--net compact] [--backend numba] [--case train]
                                      [--batch 64] [--reps 10] [--threads 2] [--settle 0.2]
                                      [--json PATH]

Every kernel of the backend's kernel module (the names numpy_kernels.py defines: it is the
specification) is wrapped in a timer for the run, and the step is timed as a whole around them.
The table gives each kernel's milliseconds per step (the median over --reps steps), its number
of calls per step, its share of the step, and how many cores it kept busy on average (the
process's CPU time over the wall time, on the CPU: 2.00 is both of two cores all the time;
rough for kernels that take well under a millisecond, and it counts any thread of the process
that runs meanwhile, such as BLAS's workers still spinning after a matrix product);
"outside the kernels" is the rest (the median over the steps of each step's remainder):
Python, the autograd graph, allocation, NumPy expressions in the ops themselves, and the
dense layers' matrix products (`x @ W.T`, which go straight to BLAS or cuBLAS: for the seed
net's 18432 x 3072 layer that is much of the step).

A kernel that calls another kernel is counted once, at the outer call. With --backend cuda the
model and data live on the GPU, and each kernel call is synchronized before and after, so that
its time is its own: that serializes what would otherwise overlap, so the step is slower than
in benchmarks.train_step, and the table is for finding the big items, not for the step's time.
"""

import argparse
import statistics
import sys
import time
from collections import defaultdict

import nnlite
from benchmarks import cuda_sync, machine, print_table, set_threads, write_json
from benchmarks.train_step import our_step_functions
from nnlite import backends
from nnlite.backends import kernels_for, numpy_kernels


def kernel_names():
    """The kernels every backend defines: the public functions of the specification."""
    return sorted(name for name, value in vars(numpy_kernels).items()
                  if callable(value) and not name.startswith("_")
                  and getattr(value, "__module__", None) == numpy_kernels.__name__)


class KernelTimer:
    """Wraps the kernels of `module` while in a `with` block and adds up their time per name."""

    def __init__(self, module, sync=None):
        self.module, self.sync = module, sync or (lambda: None)
        self.seconds, self.cpu, self.calls = defaultdict(float), defaultdict(float), defaultdict(int)
        self._depth, self._originals = 0, {}

    def _wrap(self, name, kernel):
        def timed(*args, **kwargs):
            if self._depth:  # called from inside another kernel: that one is counting
                return kernel(*args, **kwargs)
            self._depth += 1
            try:
                self.sync()
                start, start_cpu = time.perf_counter(), time.process_time()
                result = kernel(*args, **kwargs)
                self.sync()
                self.seconds[name] += time.perf_counter() - start
                self.cpu[name] += time.process_time() - start_cpu  # all of the process's threads
                self.calls[name] += 1
            finally:
                self._depth -= 1
            return result
        return timed

    def __enter__(self):
        for name in kernel_names():
            kernel = getattr(self.module, name, None)
            if kernel is not None:
                self._originals[name] = kernel
                setattr(self.module, name, self._wrap(name, kernel))
        return self

    def __exit__(self, *exc):
        for name, kernel in self._originals.items():
            setattr(self.module, name, kernel)
        self._originals.clear()

    def reset(self):
        self.seconds.clear()
        self.cpu.clear()
        self.calls.clear()


def profile(net, backend, case, batch, reps, settle, sync=None):
    """(step seconds per rep, the kernels' seconds in each step, {kernel: [seconds per rep]},
    {kernel: [CPU seconds per rep]}, {kernel: calls per step}). CPU seconds are summed over
    the process's threads."""
    nnlite.use(backend)
    device = backends.default_device()  # the kernels that run are chosen by where the arrays are
    model, functions = our_step_functions(net, backend, device, (batch,), batch)
    step = functions[f"{case} b{batch}"]
    sync = sync or (lambda: None)

    steps, kernels, per_kernel, cpu, calls = [], [], defaultdict(list), defaultdict(list), {}
    with KernelTimer(kernels_for(model.parameters()[0].data), sync) as timer:
        for _ in range(2):  # warm-up: compilation, first allocations
            step()
        for _ in range(reps):
            timer.reset()
            sync()
            time.sleep(settle)
            start = time.perf_counter()
            step()
            sync()
            steps.append(time.perf_counter() - start)
            kernels.append(sum(timer.seconds.values()))
            for name, seconds in timer.seconds.items():
                per_kernel[name].append(seconds)
                cpu[name].append(timer.cpu[name])
            calls = dict(timer.calls)
    return steps, kernels, per_kernel, cpu, calls


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", default="compact")
    parser.add_argument("--backend", default="numba", choices=("numpy", "numba", "cuda"))
    parser.add_argument("--case", default="train", choices=("train", "infer"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of pause before each step (default 0.2 on the CPU, 0 with cuda)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    backend = args.backend
    reason = nnlite.available()[backend]
    if reason is not None:
        print(f"backend {backend} is not available: {reason}", file=sys.stderr)
        return 2
    settle = args.settle if args.settle is not None else (0.0 if backend == "cuda" else 0.2)
    threads = set_threads(args.threads)
    nnlite.keep_freed_memory()  # as benchmarks.train_step and emotion train do
    sync = cuda_sync() if backend == "cuda" else None

    steps, kernels, per_kernel, cpu, calls = profile(args.net, backend, args.case, args.batch,
                                                     args.reps, settle, sync)
    step_ms = statistics.median(steps) * 1e3
    rows = [{"kernel": name, "calls": calls.get(name, 0), "ms": statistics.median(times) * 1e3,
             "cores": sum(cpu[name]) / sum(times) if sum(times) else None}
            for name, times in per_kernel.items()]
    rows.sort(key=lambda row: -row["ms"])
    # the median of each step's own remainder (medians of different kernels need not add up)
    rows.append({"kernel": "outside the kernels",
                 "ms": statistics.median(s - k for s, k in zip(steps, kernels)) * 1e3})
    for row in rows:
        row["share"] = row["ms"] / step_ms
    print(f"{args.net} {backend} {args.case} batch {args.batch}: median step {step_ms:.2f} ms "
          f"over {args.reps} steps   threads: {threads}   machine: {machine()}")
    print_table(rows, [("kernel", "kernel", "{}"), ("calls", "calls/step", "{}"),
                       ("ms", "ms/step", "{:.2f}"), ("share", "share", "{:.1%}"),
                       ("cores", "cores busy", "{:.2f}")])
    if args.json:
        write_json(args.json, {"machine": machine(), "threads": threads, "net": args.net,
                               "backend": backend, "case": args.case, "batch": args.batch,
                               "settle_s": settle, "step_ms": step_ms,
                               "steps_ms": [t * 1e3 for t in steps],
                               "kernels_ms": [t * 1e3 for t in kernels],
                               "command": " ".join(sys.argv), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
