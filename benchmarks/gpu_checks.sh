#!/usr/bin/env bash
# Every check and benchmark that needs a real GPU, in one command, for a session lent a GPU
# briefly (15 minutes of device time in all, 10 a command, 3-4 of them to start the machine):
#
#     bash benchmarks/gpu_checks.sh [--dry-run] [--only STEP,STEP] [OUT_DIR]
#
# ESTIMATED DEVICE TIME (an estimate from the 2026-11-24 H100 run and the steps' sizes, not
# yet measured): start 3-4 min + about 4 min of steps, which are capped at 330 s in all (the
# limits below) = at most 9.5 min. A whole rerun on the still-warm machine (or of the failed
# steps alone: --only) fits in the 15 minutes (4 + 5.5 + 5.5); a second cold start would not.
#
# Where the results go: OUT_DIR (default $OUT, else ./gpu_checks_out) receives two files only
# (a lent machine returns at most 8): gpu_checks.tar.gz, every step's log and JSON, and
# summary.md, one page of each step's status, time, limit and last lines. Both are rewritten
# after every step, so a command killed midway still returns what ran.
#
# It cannot lie: the first step checks the versions the checks rely on and that nnlite sees a
# real GPU, and stops everything (status 3) if not, saying why; the parity step fails when a
# GPU test was skipped (benchmarks/gpu_env.py); every step runs under its own time limit; the
# script's status is non-zero if any step failed or timed out.
#
# The lent machine's image (Python 3.12 as python3, NumPy 2.x, Numba, numba-cuda, CuPy for
# CUDA 13, PyTorch 2.11 for CUDA 13) is used as it is: nothing is installed (`pip install` of
# the [cuda12] extra would put a second CuPy beside the image's), and the project runs from the
# working tree through PYTHONPATH. pyproject's `bench` extra pins torch==2.13.0 for the CPU
# figures in RESULTS.md; the GPU figures use the image's PyTorch, whose version every JSON
# records (with the GPU, driver, CUDA runtime, CuPy and numba-cuda: benchmarks.device()).
#
# --dry-run (or GPU_CHECKS_DRY_RUN=1), for a machine without a GPU: the same steps, archive and
# summary, on tiny shapes: the kernel tests under Numba's CUDA simulator, the benchmarks on
# the CPU with the numpy backend. launch_overhead times CuPy launches and is left out there
# (its summary row says so). tests/test_gpu_checks.py runs it.
set -u
py=${PYTHON:-python3}
dry=${GPU_CHECKS_DRY_RUN:-0}
only=""
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) dry=1; shift ;;
        --only) only=",$2,"; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
        *) break ;;
    esac
done
[ "$dry" = 0 ] || dry=1
out=${1:-${OUT:-gpu_checks_out}}
mkdir -p "$out" || { echo "gpu_checks: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_checks.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM NNLITE_BACKEND  # a GPU run must not inherit the simulator
sim="env NUMBA_ENABLE_CUDASIM=1 NNLITE_BACKEND=cuda"
status=0
rows=""

# the archive and the summary, each written to a temporary name and renamed (atomic)
publish() {
    tar -czf "$out/.gpu_checks.tar.gz.tmp" -C "$work" . && mv "$out/.gpu_checks.tar.gz.tmp" "$out/gpu_checks.tar.gz"
    {
        echo "# gpu_checks $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ $dry = 1 ] && echo ' (DRY RUN: simulator and CPU, no GPU)')"
        echo
        echo "host: $(hostname); device: $(grep -m1 '^device:' "$work/environment.log" 2>/dev/null | cut -c9-200)"
        echo "result: $([ $status = 0 ] && echo 'every step passed' || echo "FAILED (status $status)")"
        echo
        echo "| step | status | seconds | limit s |"
        echo "|---|---|---:|---:|"
        printf '%b' "$rows"
        for log in "$work"/*.log; do
            [ -e "$log" ] || continue
            echo
            echo "## $(basename "$log" .log)"
            echo '```'
            tail -n 6 "$log" | cut -c1-160
            echo '```'
        done
    } > "$out/.summary.md.tmp" && mv "$out/.summary.md.tmp" "$out/summary.md"
}

# step NAME LIMIT_S COMMAND...: run under `timeout`, log to NAME.log, record the verdict
step() {
    local name=$1 limit=$2 start rc verdict
    shift 2
    if [ -n "$only" ] && [[ $only != *",$name,"* ]] && [ "$name" != environment ]; then
        return 0
    fi
    echo "== $name (limit $limit s): $*"
    start=$(date +%s)
    { echo "\$ $*"; timeout --kill-after=5 "$limit" "$@"; } > "$work/$name.log" 2>&1
    rc=$?
    case $rc in
        0) verdict=passed ;;
        124|137) verdict="TIMED OUT"; status=1 ;;
        *) verdict="FAILED (exit $rc)"; status=1 ;;
    esac
    rows+="| $name | $verdict | $(( $(date +%s) - start )) | $limit |\n"
    echo "   $verdict after $(( $(date +%s) - start )) s"
    tail -n 4 "$work/$name.log" | sed 's/^/   | /'
    publish
    return $rc
}

refuse() {  # the environment step failed: nothing else may run, and the reason is repeated
    status=3
    publish
    grep -h '^gpu_checks:' "$work/environment.log" >&2
    echo "gpu_checks: stopped after the environment step; see $out/summary.md" >&2
    exit 3
}

skip() {  # skip NAME WHY: a row that says why a step did not run
    rows+="| $1 | not run: $2 | | |\n"
    publish
}

if [ $dry = 1 ]; then
    # -- the dry run: every step on tiny shapes, the simulator for the kernels --------------
    step environment 60 $sim "$py" -m benchmarks.gpu_env check --dry-run --json "$work/environment.json" || refuse
    step parity 300 bash -c "$sim $py -m pytest -q -p no:cacheprovider tests/test_cuda_model_size.py \
        --junitxml=$work/parity.xml; p=\$?; $py -m benchmarks.gpu_env parity $work/parity.xml --dry-run \
        --every-test-in tests/test_cuda_model_size.py; v=\$?; exit \$(( p > v ? p : v ))"
    step gradcheck 300 "$py" -m nnlite.gradcheck --backend numpy
    skip launch_overhead "it times CuPy launches (dry run)"
    step train_step 300 "$py" -m benchmarks.train_step --backends numpy --nets compact,wide,mobile \
        --batch 2 --image-size 16 --reps 1 --numpy-reps 1 --settle 0 --threads 1 --json "$work/train_step.json"
    step depthwise 300 $sim "$py" -m benchmarks.grouped_conv --device cuda --tiny --rounds 1 --json "$work/depthwise.json"
    step profile_step 300 "$py" -m benchmarks.profile_step --backend numpy --batch 2 --reps 1 --settle 0 \
        --threads 1 --json "$work/profile_step.json"
    step train_step_numba 300 "$py" -m benchmarks.train_step --backends numpy --nets compact --batch 2 \
        --image-size 8 --reps 1 --numpy-reps 1 --threads 1 --settle 0 --no-torch --json "$work/train_step_numba_host.json"
    exit $status
fi

# -- on the GPU: the most important first; the limits add up to 330 s ------------------------
# the versions, the device, and nnlite's own view: no real GPU, no run (status 3)
step environment 20 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
    $py -m benchmarks.gpu_env check --json $work/environment.json" || refuse
# every kernel against the NumPy reference and every gradient check on the cuda backend, the
# GPU-only tests, and the new kernels at the nets' sizes; a skipped GPU test fails the step
step parity 110 bash -c "$py -m pytest -q -p no:cacheprovider tests/test_backends.py tests/test_cuda_gpu.py \
    tests/test_cuda_model_size.py tests/test_benchmarks.py -k 'cuda or gpu or launch or model_size' \
    --junitxml=$work/parity.xml; p=\$?; $py -m benchmarks.gpu_env parity $work/parity.xml \
    --every-test-in tests/test_cuda_gpu.py tests/test_cuda_model_size.py; v=\$?; exit \$(( p > v ? p : v ))"
step gradcheck 40 "$py" -m nnlite.gradcheck --backend cuda
# what a launch costs the host, and batch norm as CuPy expressions vs the Numba CUDA kernels
step launch_overhead 25 "$py" -m benchmarks.launch_overhead --reps 500 --bn-reps 20 --json "$work/launch_overhead.json"
# our cuda backend against PyTorch + cuDNN, TF32 off and on, interleaved, all four nets
step train_step 50 "$py" -m benchmarks.train_step --device cuda --backends cuda --nets compact,wide,mobile,seed \
    --reps 5 --torch-tf32 both --json "$work/train_step_gpu.json"
# the three depthwise kernels against cuDNN's grouped convolution, the mobile net's shapes
step depthwise 25 "$py" -m benchmarks.grouped_conv --device cuda --rounds 3 --json "$work/depthwise_gpu.json"
step profile_step 20 "$py" -m benchmarks.profile_step --backend cuda --reps 5 --json "$work/profile_step_cuda.json"
# the Numba CPU backend on this machine's CPU (2 threads, as on the CI machine), for the
# "CUDA >= 20x Numba" target measured on one machine rather than across two
step train_step_numba 40 "$py" -m benchmarks.train_step --backends numba --nets compact --reps 3 \
    --numpy-reps 1 --threads 2 --no-torch --json "$work/train_step_numba_host.json"
exit $status
