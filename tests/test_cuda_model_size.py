"""The CUDA kernels that landed after the last GPU run (H100, 2026-11-24), at the nets' shapes.

Batch-norm statistics, forward and backward with the fused ReLU, the running update, the ReLU
backward, softmax cross-entropy both ways, the register cap of the per-channel sums, the
convolution backward that rebuilds im2col, and the three depthwise kernels: until a GPU runs
them, they have only run under Numba's CUDA simulator, on tiny shapes.

Each test takes a tiny case, which runs under the simulator exactly as on a GPU

    NUMBA_ENABLE_CUDASIM=1 NNLITE_BACKEND=cuda python -m pytest tests/test_cuda_model_size.py

and the model's own sizes (compact, wide and mobile layers, batch 64 and 1: thousands of
blocks, 512-thread per-channel sums), marked `gpu` and skipped with the reason where nnlite
sees no real GPU. The stream and register tests are GPU-only: the simulator has neither.
Float32 throughout, the dtype the nets train in; the reference is numpy_kernels.
`bash benchmarks/gpu_checks.sh` runs this file on a lent GPU.
"""

import numpy as np
import pytest

from nnlite import backends
from nnlite.backends import numpy_kernels as reference
from tests.conftest import SIMULATOR, assert_matches

CUDA_REASON = backends.available()["cuda"]
NO_REAL_GPU = "the CUDA simulator has no GPU" if SIMULATOR else CUDA_REASON
F32 = np.float32

needs_cuda = pytest.mark.skipif(
    CUDA_REASON is not None, reason=f"needs the cuda backend (a GPU, or NUMBA_ENABLE_CUDASIM=1): "
                                    f"{CUDA_REASON}")
gpu_only = [pytest.mark.gpu,
            pytest.mark.skipif(NO_REAL_GPU is not None, reason=f"no real GPU: {NO_REAL_GPU}")]


def model_size(*values, id):
    """A case at the nets' size: on a real GPU only (the simulator would take hours)."""
    return pytest.param(*values, id=id, marks=gpu_only)


def tiny(*values, id):
    return pytest.param(*values, id=f"tiny-{id}")


def ck():
    from nnlite.backends import cuda_kernels

    return cuda_kernels


def dev(*arrays):
    """Explicit copies to the cuda backend's arrays (CuPy; NumPy under the simulator)."""
    return [backends.to_device(a, "cuda") for a in arrays]


def host(a):
    return backends.to_numpy(a)


# The mobile net's depthwise layers (x shape per image): two per block, at the block's input
# size, 48 -> 24 -> 12 -> 6 (test_the_depthwise_cases_are_the_mobile_nets_layers checks it).
MOBILE_DEPTHWISE = [(16, 48, 48), (24, 48, 48), (24, 24, 24), (64, 24, 24), (64, 12, 12),
                    (128, 12, 12), (128, 6, 6), (256, 6, 6)]


def test_the_depthwise_cases_are_the_mobile_nets_layers(monkeypatch):
    """The shapes above are what the mobile net's forward hands the depthwise kernel."""
    import nnlite
    from emotion.cnn.models import build

    seen = []
    real = reference.grouped_conv2d_forward

    def spy(x, W, stride, pad, groups):
        seen.append(x.shape[1:])
        return real(x, W, stride, pad, groups)

    monkeypatch.setattr(reference, "grouped_conv2d_forward", spy)
    nnlite.use("numpy")
    model = build("mobile")
    model.eval()
    with nnlite.no_grad():
        model(nnlite.Tensor(np.zeros((1, 1, 48, 48), F32)))
    assert seen == MOBILE_DEPTHWISE


BATCH_NORM = [tiny((3, 5, 4, 4), id="3x5x4x4")] + [
    model_size(shape, id=name) for shape, name in [
        ((64, 16, 48, 48), "mobile-stem-b64"), ((64, 64, 48, 48), "wide-first-b64"),
        ((64, 512, 6, 6), "wide-last-b64"), ((1, 64, 48, 48), "wide-first-b1"),
        ((64, 256), "2d-b64")]]


@needs_cuda
@pytest.mark.parametrize("shape", BATCH_NORM)
def test_batch_norm_with_the_fused_relu(shape):
    """Statistics, forward with the ReLU fused, and both backwards (training and eval)."""
    rng = np.random.default_rng(20)
    x = (rng.standard_normal(shape) * 2 + 1).astype(F32)
    gamma, beta = rng.uniform(0.5, 1.5, shape[1]).astype(F32), rng.standard_normal(shape[1]).astype(F32)
    gy = rng.standard_normal(shape).astype(F32)
    k = ck()
    mean, var = reference.batch_norm_stats(x)
    for want, got in zip((mean, var), k.batch_norm_stats(*dev(x))):
        assert_matches(want, got, F32)
    y, inv_std = k.batch_norm_forward(*dev(x, gamma, beta, mean, var), 1e-5, True)
    y_want, inv_std_want = reference.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)
    assert_matches(y_want, y, F32)
    assert_matches(inv_std_want, inv_std, F32)
    assert (y_want == 0).mean() > 0.1  # the ReLU cut a share: the mask matters
    # the mask is this forward's own y > 0 (see tests/test_backends.py test_batch_norm)
    masked = reference.relu_backward(gy, host(y))
    for train in (True, False):
        want = reference.batch_norm_backward(masked, x, mean, gamma, inv_std_want, train)
        got = k.batch_norm_backward(*dev(gy, x, mean, gamma, inv_std_want), train, *dev(beta))
        for w, g in zip(want, got):
            assert_matches(w, g, F32)


@needs_cuda
@pytest.mark.parametrize("channels", [tiny(5, id="5")] + [
    model_size(c, id=f"{c}-channels") for c in (16, 512)])
def test_batch_norm_running_update(channels):
    rng = np.random.default_rng(21)
    arrays = [rng.uniform(0.5, 2, channels).astype(F32) for _ in range(4)]
    want = [a.copy() for a in arrays[:2]]
    reference.batch_norm_running_update(*want, *arrays[2:], 0.1, 64 * 6 * 6)
    got = dev(*arrays[:2])
    ck().batch_norm_running_update(*got, *dev(*arrays[2:]), 0.1, 64 * 6 * 6)
    for w, g, before in zip(want, got, arrays):
        assert not np.allclose(w, before)  # the statistics moved, in place
        assert_matches(w, g, F32)


@needs_cuda
@pytest.mark.parametrize("shape", [tiny((3, 4, 5, 6), id="3x4x5x6")] + [
    model_size((64, 64, 48, 48), id="wide-first-b64"), model_size((64, 512), id="2d-b64")])
def test_relu_backward(shape):
    rng = np.random.default_rng(22)
    y = np.maximum(rng.standard_normal(shape), 0).astype(F32)
    gy = rng.standard_normal(shape).astype(F32)
    got = host(ck().relu_backward(*dev(gy, y)))
    assert got.dtype == F32
    np.testing.assert_array_equal(got, reference.relu_backward(gy, y))


@needs_cuda
@pytest.mark.parametrize("rows", [tiny(40, id="40-rows")] + [
    model_size(n, id=f"{n}-rows") for n in (1, 64, 4099)])  # 4099: 8 rows a thread and more
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy(rows, smoothing):
    rng = np.random.default_rng(23)
    logits = (rng.standard_normal((rows, 7)) * 3).astype(F32)
    labels = rng.integers(0, 7, rows)
    weights = rng.uniform(0.5, 2.0, rows).astype(F32)
    k = ck()
    loss, probs = reference.softmax_cross_entropy_forward(logits, labels, weights, smoothing)
    loss_got, probs_got = k.softmax_cross_entropy_forward(*dev(logits, labels, weights), smoothing)
    assert_matches(loss, loss_got, F32)
    assert_matches(probs, probs_got, F32)
    gloss = np.asarray(1.7, F32)
    assert_matches(reference.softmax_cross_entropy_backward(gloss, probs, labels, weights, smoothing),
                   k.softmax_cross_entropy_backward(*dev(gloss), probs_got, *dev(labels, weights),
                                                    smoothing), F32)


# (x shape, output channels): the backward builds im2col again from x rather than keeping it
CONV = [tiny((2, 3, 6, 5), 4, id="2x3x6x5")] + [
    model_size(shape, oc, id=name) for shape, oc, name in [
        ((64, 1, 48, 48), 64, "wide-first-b64"), ((64, 32, 48, 48), 32, "compact-b64"),
        ((64, 64, 48, 48), 64, "wide-b64"), ((64, 256, 6, 6), 512, "wide-last-b64"),
        ((1, 64, 48, 48), 64, "wide-b1")]]


@needs_cuda
@pytest.mark.parametrize("shape,oc", CONV)
def test_conv2d_backward_rebuilds_im2col(shape, oc):
    rng = np.random.default_rng(24)
    x = rng.standard_normal(shape).astype(F32)
    W = (rng.standard_normal((oc, shape[1], 3, 3)) / np.sqrt(9 * shape[1])).astype(F32)
    gy = rng.standard_normal((shape[0], oc) + shape[2:]).astype(F32)
    want = reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))
    got = ck().conv2d_backward(*dev(gy, x, W), (1, 1), (1, 1, 1, 1))
    for w, g in zip(want, got):
        assert_matches(w, g, F32)
    gx, gW = ck().conv2d_backward(*dev(gy, x, W), (1, 1), (1, 1, 1, 1), input_grad=False)
    assert gx is None  # a first layer: the weights' gradient alone, the same
    assert_matches(want[1], gW, F32)


DEPTHWISE = [tiny((2, 3, 5, 6), id="2x3x5x6"), tiny((1, 4, 4, 4), id="1x4x4x4")] + [
    model_size((batch,) + shape, id=f"mobile-{shape[0]}x{shape[1]}-b{batch}")
    for batch in (64, 1) for shape in MOBILE_DEPTHWISE]


@needs_cuda
@pytest.mark.parametrize("shape", DEPTHWISE)
def test_depthwise_kernels(shape):
    """Forward (a thread per output), grad input (a gather) and grad weight (a block per
    weight, float64 sums), 3x3 'same' as in the mobile net."""
    rng = np.random.default_rng(25)
    c = shape[1]
    x = rng.standard_normal(shape).astype(F32)
    W = rng.standard_normal((c, 1, 3, 3)).astype(F32)
    gy = rng.standard_normal(shape).astype(F32)
    pad, k = (1, 1, 1, 1), ck()
    assert_matches(reference.grouped_conv2d_forward(x, W, (1, 1), pad, c),
                   k.grouped_conv2d_forward(*dev(x, W), (1, 1), pad, c), F32)
    want = reference.grouped_conv2d_backward(gy, x, W, (1, 1), pad, c)
    got = k.grouped_conv2d_backward(*dev(gy, x, W), (1, 1), pad, c)
    for w, g in zip(want, got):
        assert_matches(w, g, F32)


def _new_kernels_in_order(k, x, gamma, beta, gy, W_depthwise, W_conv, logits, labels, weights):
    """Every new kernel once, each reading what the one before wrote (a dependent chain)."""
    mean, var = k.batch_norm_stats(x)
    y, inv_std = k.batch_norm_forward(x, gamma, beta, mean, var, 1e-5, True)
    g_bn = k.batch_norm_backward(gy, x, mean, gamma, inv_std, True, beta)
    g_relu = k.relu_backward(gy, y)
    depthwise = k.grouped_conv2d_forward(y, W_depthwise, (1, 1), (1, 1, 1, 1), y.shape[1])
    g_depthwise = k.grouped_conv2d_backward(g_relu, y, W_depthwise, (1, 1), (1, 1, 1, 1), y.shape[1])
    g_conv = k.conv2d_backward(depthwise, y, W_conv, (1, 1), (1, 1, 1, 1))
    loss, probs = k.softmax_cross_entropy_forward(logits, labels, weights, 0.1)
    g_logits = k.softmax_cross_entropy_backward(loss, probs, labels, weights, 0.1)
    return [mean, var, y, inv_std, *g_bn, g_relu, depthwise, *g_depthwise, *g_conv, loss, probs,
            g_logits]


@needs_cuda
@pytest.mark.parametrize("shape", [tiny((3, 4, 5, 5), id="3x4x5x5-default-stream")] + [
    model_size((64, 24, 48, 48), id="mobile-24x48x48-b64-non-blocking-stream")])
def test_new_kernels_follow_the_work_on_cupys_current_stream(shape):
    """On a non-blocking stream (no implicit ordering with the default one) each new kernel
    reads what the CuPy ops before it on that stream wrote: it was launched on that stream.
    (The tiny case, on the simulator's default stream, checks the chain's values alone.)"""
    import contextlib

    rng = np.random.default_rng(26)
    n, c = shape[:2]
    x0, gy = (rng.standard_normal(shape).astype(F32) for _ in range(2))
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(F32), rng.standard_normal(c).astype(F32)
    W_depthwise = rng.standard_normal((c, 1, 3, 3)).astype(F32)
    W_conv = (rng.standard_normal((c, c, 3, 3)) / (3 * c)).astype(F32)
    logits = rng.standard_normal((n, 7)).astype(F32)
    labels, weights = rng.integers(0, 7, n), rng.uniform(0.5, 2, n).astype(F32)
    if NO_REAL_GPU is None:
        import cupy as cp

        stream = cp.cuda.Stream(non_blocking=True)
    else:
        cp, stream = np, contextlib.nullcontext()
    with stream:
        (x,) = dev(x0)
        for _ in range(20):  # enough queued work that a kernel on another stream would race it
            x = cp.maximum(x * F32(1.0001), F32(-1e30))
        gpu = dev(gamma, beta, gy, W_depthwise, W_conv, logits, labels, weights)
        got = _new_kernels_in_order(ck(), x, *gpu)
    if NO_REAL_GPU is None:
        stream.synchronize()
    want = _new_kernels_in_order(reference, host(x), gamma, beta, gy, W_depthwise, W_conv,
                                 logits, labels, weights)
    for w, g in zip(want, got):
        assert_matches(np.asarray(w), g, F32)


@pytest.mark.parametrize("_", [model_size(None, id="after-the-model-size-cases")])
def test_the_per_channel_sums_keep_the_register_cap(_):
    """The 512-thread reductions launch only if each thread needs <= 128 registers; the cap
    (max_registers) makes the compiler hold to it. Read back from the compiled kernels."""
    k = ck()
    rng = np.random.default_rng(27)
    x = rng.standard_normal((4, 8, 6, 6)).astype(F32)
    gamma, beta = np.ones(8, F32), np.zeros(8, F32)
    _new_kernels_in_order(k, *dev(x, gamma, beta, x), *dev(rng.standard_normal((8, 1, 3, 3)).astype(F32),
                          rng.standard_normal((8, 8, 3, 3)).astype(F32),
                          rng.standard_normal((4, 7)).astype(F32), np.arange(4) % 7,
                          np.ones(4, F32)))
    for kernel in (k._batch_norm_stats_kernel, k._batch_norm_backward_sums_kernel,
                   k._softmax_cross_entropy_forward_kernel,
                   k._softmax_cross_entropy_backward_kernel, k._depthwise_grad_weight_kernel):
        registers = kernel.get_regs_per_thread()
        counts = registers.values() if isinstance(registers, dict) else [registers]
        assert counts and all(0 < r <= 128 for r in counts), (kernel, registers)
