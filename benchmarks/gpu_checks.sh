#!/usr/bin/env bash
# Every check and benchmark that needs a real GPU, in one run of a few minutes, for a session
# that has a GPU only for a while:
#
#     bash benchmarks/gpu_checks.sh [OUT_DIR]        (default: $OUT, else ./gpu_checks_out)
#
# Each step writes its whole log to OUT_DIR/<step>.log (the benchmarks also their JSON) and
# prints its exit status, time and last lines; a failing step does not stop the ones after it.
# The most important come first: parity on the GPU, then the figures.
set -u
out=${1:-${OUT:-gpu_checks_out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {
    local name=$1 start rc
    shift
    echo "== $name: $*"
    start=$(date +%s)
    "$@" > "$out/$name.log" 2>&1
    rc=$?
    echo "   exit $rc after $(( $(date +%s) - start )) s"
    tail -n 6 "$out/$name.log" | sed 's/^/   | /'
}

step environment bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader;
    python -c "import sys, numpy, numba, cupy; print(\"python\", sys.version.split()[0], \"numpy\",
    numpy.__version__, \"numba\", numba.__version__, \"cupy\", cupy.__version__)"'
# every kernel against the NumPy reference and every gradient check, on the cuda backend
step parity python -m pytest -q -p no:cacheprovider tests/test_backends.py tests/test_cuda_gpu.py \
    tests/test_benchmarks.py -k "cuda or gpu or launch"
step gradcheck python -m nnlite.gradcheck --backend cuda
# what a launch costs the host, and batch norm as CuPy expressions vs the Numba CUDA kernels
step launch_overhead python -m benchmarks.launch_overhead --json "$out/launch_overhead.json"
# our cuda backend against PyTorch + cuDNN, interleaved (PyTorch only where it is installed)
step train_step python -m benchmarks.train_step --device cuda --backends cuda --nets compact,seed \
    --reps 10 --json "$out/train_step_gpu.json"
step profile_step python -m benchmarks.profile_step --backend cuda --json "$out/profile_step_cuda.json"
# the Numba CPU backend on this machine's CPU (2 threads, as on the CI machine), for the
# "CUDA >= 20x Numba" target measured on one machine rather than across two
step train_step_numba python -m benchmarks.train_step --backends numba --nets compact --reps 5 \
    --threads 2 --no-torch --json "$out/train_step_numba_host.json"
