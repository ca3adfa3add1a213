"""The Numba backend's own machinery: Winograd, its threads, its compiled loops' edge cases.

What every backend must do is in tests/test_backends.py; these tests reach into the Numba
modules (numba/winograd, numba/pool, numba/compile) and run only where Numba works.
"""

import numpy as np
import pytest

import nnlite
from nnlite import backends
from nnlite.backends import numpy_kernels as reference
from tests.conftest import DTYPES, TOLERANCE, assert_matches, needs_numba


def _force_winograd(monkeypatch, chunk_bytes):
    """Send every 3x3 stride-1 'same' convolution of the Numba backend through Winograd F(2x2, 3x3)
    (by default only batches of 4 or more images of 6x6 and more with 16 channels or more take
    it), with the filters' gradients computed on the threads however few they are, and count the
    calls."""
    from nnlite.backends.numba import winograd as numba_winograd

    monkeypatch.setattr(numba_winograd, "WINOGRAD_FILTERS_MIN_THREADED", 0)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_MIN_PIXELS", 0)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(numba_winograd, "WINOGRAD_MIN_IMAGES", 1)
    calls = []
    for name in ("winograd_forward", "winograd_backward"):
        original = getattr(numba_winograd, name)
        monkeypatch.setattr(numba_winograd, name,
                            lambda *args, _f=original, _n=name: calls.append(_n) or _f(*args))
    return calls


@needs_numba
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 20])  # one image per chunk; the whole batch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 2, 6, 6), (2, 1, 1, 1), (2, 2, 2, 3),
                                   (3, 4, 9, 4), (5, 2, 7, 5), (2, 3, 4, 11)])
def test_numba_winograd_conv(monkeypatch, shape, dtype, chunk_bytes):
    # Odd and even sizes (a last tile half outside the image), one-pixel images, and chunks that
    # split the batch unevenly, against the NumPy specification.
    import numba
    from nnlite.backends.numba import kernels as numba_kernels

    calls = _force_winograd(monkeypatch, chunk_bytes)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((max(shape[0], numba.get_num_threads()), *shape[1:])).astype(dtype)
    W = rng.standard_normal((3, shape[1], 3, 3)).astype(dtype)
    y = reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_matches(y, numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)), dtype)
    want_gx, want_gW = reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))
    for want, got in zip((want_gx, want_gW),
                         numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))):
        assert_matches(want, got, dtype)
    gx, gW = numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1), input_grad=False)
    assert gx is None
    assert_matches(want_gW, gW, dtype)
    assert calls == ["winograd_forward", "winograd_backward", "winograd_backward"]


@needs_numba
@pytest.mark.parametrize("hw, blas, winograd", [(12, 1, True), (11, 1, False), (12, 2, False)])
def test_numba_winograd_for_one_image_runs_in_the_calling_thread(monkeypatch, hw, blas, winograd):
    # Batch 1 on two threads with BLAS on one (the live demo): Winograd from 12 x 12 on (144
    # pixels), in the calling thread, with the same result as the NumPy specification. BLAS on
    # two threads keeps im2col, whose one GEMM it spreads over both.
    import numba
    import threading
    from threadpoolctl import threadpool_limits
    from nnlite import blas as nnlite_blas
    from nnlite.backends.numba import kernels as numba_kernels, pool as numba_runtime
    from nnlite.backends.numba import winograd as numba_winograd

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    monkeypatch.setattr(numba_runtime, "run_on_threads", None)  # no hand-off to the pool
    calls = []
    original = numba_winograd._winograd_input
    monkeypatch.setattr(numba_winograd, "_winograd_input", lambda *a: calls.append(
        threading.current_thread()) or original(*a))
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 16, hw, hw)).astype(np.float32)
    W = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        with threadpool_limits(blas, user_api="blas"):
            if nnlite_blas.numpy_blas_threads() != blas:
                pytest.skip(f"BLAS cannot run on {blas} threads here")
            y = numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
    finally:
        numba.set_num_threads(previous)
    assert_matches(reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)), y, np.float32)
    assert calls == ([threading.current_thread()] if winograd else [])


@needs_numba
@pytest.mark.parametrize("h, w", [(6, 6), (5, 7), (1, 1), (2, 3), (7, 4)])
def test_numba_winograd_transforms_ignore_their_scratch(h, w):
    # The input transform and its adjoint write every scratch value they later read: NaN left
    # in the scratch buffers (np.empty gives whatever was there) must not reach V or gx.
    from nnlite.backends.numba import winograd as nk

    rng = np.random.default_rng(3)
    th, tw = (h + 1) // 2, (w + 1) // 2
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    gV = rng.standard_normal((16, 3, 2, th * tw)).astype(np.float32)
    results = []
    for fill in (0.0, np.nan):
        E, Q = np.full((2, tw + 1), fill, np.float32), np.full((4, 2, th + 1, tw), fill, np.float32)
        V, gx = np.empty((16, 3, 2, th * tw), np.float32), np.empty_like(x)
        nk._winograd_input(x, 0, 2, E, Q, V)
        Q[:] = fill
        nk._winograd_grad_input(gV, 0, 2, Q, gx)
        results.append((V, gx))
    for clean, dirty in zip(*results):
        assert np.isfinite(dirty).all()
        np.testing.assert_array_equal(clean, dirty)


@needs_numba
@pytest.mark.parametrize("winograd", [False, True])
def test_numba_conv_backward_rejects_a_wrong_gy(monkeypatch, winograd):
    # The Numba loops index gy by the shapes of x and W: a gy of another shape must be an
    # error, not a read past its end.
    from nnlite.backends.numba import kernels as numba_kernels

    if winograd:
        _force_winograd(monkeypatch, 1)
    x, W = np.ones((4, 3, 6, 6), np.float32), np.ones((2, 3, 3, 3), np.float32)
    for shape in [(2, 2, 6, 6), (4, 1, 6, 6), (4, 2, 5, 6)]:
        with pytest.raises(ValueError, match="gy has shape"):
            numba_kernels.conv2d_backward(np.ones(shape, np.float32), x, W, (1, 1), (1, 1, 1, 1))


@needs_numba
def test_numba_conv_of_integers_is_exact(monkeypatch):
    # Winograd's transforms halve values, so integer arrays must not take that path.
    from nnlite.backends.numba import kernels as numba_kernels

    _force_winograd(monkeypatch, 1 << 20)
    rng = np.random.default_rng(11)
    x, W = rng.integers(-3, 4, (4, 16, 6, 6)), rng.integers(-3, 4, (2, 16, 3, 3))
    np.testing.assert_array_equal(numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
                                  reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)))


@needs_numba
def test_numba_winograd_conv_gradcheck(monkeypatch):
    # The conv2d op through the Winograd kernels, float64 central differences.
    import numba
    import nnlite.functional as F
    from nnlite.gradcheck import gradcheck

    calls = _force_winograd(monkeypatch, 1)
    previous = nnlite.current()
    nnlite.use("numba")
    try:
        rng = np.random.default_rng(9)
        inputs = [rng.standard_normal((max(2, numba.get_num_threads()), 2, 5, 4)),
                  rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)]
        result = gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=1, pad=1), inputs)
    finally:
        nnlite.use(previous)
    assert result.ok, result
    assert "winograd_backward" in calls


@needs_numba
def test_numba_conv_follows_numba_thread_count(monkeypatch):
    # The Numba convolution runs its images on as many threads as numba.get_num_threads();
    # changing that between calls must give the same result (and use a pool of the new size;
    # one thread runs in the calling thread). POOL_MIN_COST = 0: this small call on the pool.
    import numba
    from nnlite.backends.numba import kernels as numba_kernels, pool as numba_runtime

    monkeypatch.setattr(numba_runtime, "POOL_MIN_COST", 0)

    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((5, 4, 8, 8)).astype(np.float32)
    want = (reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
            *reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
    previous = numba.get_num_threads()
    try:
        for threads in sorted({1, previous}):
            numba.set_num_threads(threads)
            got = (numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
                   *numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
            for w, g in zip(want, got):
                assert_matches(w, g, np.float32)
            if threads > 1:
                assert numba_runtime._pool_threads == threads
    finally:
        numba.set_num_threads(previous)


@needs_numba
def test_a_small_numba_conv_stays_in_the_calling_thread_with_the_same_bits(monkeypatch):
    # Under POOL_MIN_COST multiply-adds waking the pool's threads costs more than the work:
    # the tasks run here, one after another, drawing from the same queues, so forward and
    # backward give exactly the pooled results.
    import numba
    from nnlite.backends.numba import kernels as numba_kernels, pool as numba_runtime

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: every call runs in the calling thread")
    n = max(6, numba.get_num_threads())  # at least one image a thread: the pool's path
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 16, 12, 12)).astype(np.float32)
    W = rng.standard_normal((24, 16, 1, 1)).astype(np.float32)
    gy = rng.standard_normal((n, 24, 12, 12)).astype(np.float32)

    def run():
        return (numba_kernels.conv2d_forward(x, W, (1, 1), (0, 0, 0, 0)),
                *numba_kernels.conv2d_backward(gy, x, W, (1, 1), (0, 0, 0, 0)))

    pools_used = set()
    submit = numba_runtime.ThreadPoolExecutor.submit

    def spy(self, fn, *args):
        pools_used.add(self)
        return submit(self, fn, *args)

    monkeypatch.setattr(numba_runtime.ThreadPoolExecutor, "submit", spy)
    here = run()
    assert not pools_used  # n * 24 * 16 * 144 multiply-adds: far under POOL_MIN_COST
    monkeypatch.setattr(numba_runtime, "POOL_MIN_COST", 0)
    pooled = run()
    assert pools_used
    for a, b in zip(here, pooled):
        assert a.dtype == np.float32 and np.array_equal(a, b)


@needs_numba
@pytest.mark.parametrize("winograd", [False, True])
def test_numba_conv_weight_gradient_is_repeatable(monkeypatch, winograd):
    # Threads draw images from a shared queue, so which thread sums which image changes from
    # call to call; the weight gradient must not change by a single bit (a resumed training
    # run matches an uninterrupted one), on 1 or 2 threads alike.
    import numba
    from nnlite.backends.numba import kernels as numba_kernels

    if winograd:
        _force_winograd(monkeypatch, 1)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((13, 3, 8, 8)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((13, 4, 8, 8)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in [1] + [min(2, numba.config.NUMBA_NUM_THREADS)] * 6:
            numba.set_num_threads(threads)
            results.append(numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1))[1])
    finally:
        numba.set_num_threads(previous)
    for gW in results[1:]:
        np.testing.assert_array_equal(gW, results[0])


@pytest.mark.skipif(backends.available()["numba"] is not None or not hasattr(__import__("os"), "fork"),
                    reason="needs the numba backend and os.fork")
def test_numba_conv_works_in_a_forked_child():
    # The child of os.fork() inherits the pool object but not its threads; it must make its own
    # instead of waiting forever. Run in a subprocess so that the fork does not touch pytest.
    import subprocess
    import sys

    code = """if True:
        import os, signal, numpy as np
        from nnlite.backends.numba import kernels as k
        x, W = np.ones((4, 2, 6, 6), np.float32), np.ones((3, 2, 3, 3), np.float32)
        want = k.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)  # a hang ends the child with SIGALRM instead of forever
            got = k.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1))
            os._exit(0 if np.array_equal(got, want) else 3)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
    """
    result = subprocess.run([sys.executable, "-c", code], timeout=240, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@needs_numba
def test_numba_conv_from_two_python_threads():
    # Two threads convolving at once (numba's thread count is per thread, so they also ask for
    # different pool sizes): both results right, and BLAS's thread count restored afterwards.
    import threading

    import numba
    from threadpoolctl import threadpool_info

    from nnlite.backends.numba import kernels as numba_kernels

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3, 10, 10)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((6, 4, 10, 10)).astype(np.float32)
    want = (reference.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
            *reference.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
    before, errors = blas_threads(), []

    def run(threads):
        try:
            numba.set_num_threads(threads)
            for _ in range(20):
                got = (numba_kernels.conv2d_forward(x, W, (1, 1), (1, 1, 1, 1)),
                       *numba_kernels.conv2d_backward(gy, x, W, (1, 1), (1, 1, 1, 1)))
                for w, g in zip(want, got):
                    assert_matches(w, g, np.float32)
        except BaseException as err:  # reported by the main thread below
            errors.append(err)

    workers = [threading.Thread(target=run, args=(t,)) for t in (1, numba.config.NUMBA_NUM_THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    assert blas_threads() == before


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_2x2_pool_matches_the_general_loop(dtype):
    # The written-out 2x2 stride-2 pool against the general window loop on the values where
    # the order of comparisons shows: ties (the first maximum wins), -inf, NaN, an all-NaN
    # window; both compilations (serial and parallel), on a contiguous and a strided input.
    from nnlite.backends.numba import kernels as numba_kernels

    x = np.random.default_rng(3).integers(-2, 3, (2, 3, 9, 8)).astype(dtype)  # many ties
    x[0, 0, 0, :4] = (np.nan, 1.0, np.nan, np.nan)
    x[0, 0, 1, :4] = (-np.inf, 1.0, np.nan, np.nan)  # windows: NaN first and a tie; all NaN
    x[1, 2, 2:4, 2:4] = -np.inf
    for image in (x, x[:, :, :, ::-1]):
        want_y, want_argmax = np.empty((2, 3, 4, 4), dtype), np.empty((2, 3, 4, 4), np.int64)
        numba_kernels._max_pool_forward[0](image, 2, 2, 2, 2, 0, 0, want_y, want_argmax)
        got = [numba_kernels.max_pool_forward(image, 2, 2, (2, 2), (0, 0, 0, 0))]
        for compiled in numba_kernels._max_pool_2x2_forward:  # serial, parallel
            y, argmax = np.empty_like(want_y), np.empty_like(want_argmax)
            compiled(image, y, argmax)
            got.append((y, argmax))
        for y, argmax in got:
            np.testing.assert_array_equal(y, want_y)  # NaN where NaN
            np.testing.assert_array_equal(argmax, want_argmax)
    y, argmax = numba_kernels.max_pool_forward(x, 2, 2, (2, 2), (0, 0, 0, 0))
    assert y[0, 0, 0, 0] == 1 and argmax[0, 0, 0, 0] == 1  # the first of the tied maxima
    assert y[0, 0, 0, 1] == -np.inf and argmax[0, 0, 0, 1] == 0  # an all-NaN window: none wins
    assert y[1, 2, 1, 1] == -np.inf


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_winograd_filter_transforms(monkeypatch, dtype):
    # The filters' gradient (the blocks' sum, then the adjoint transform) gives the same bits in
    # the calling thread and on the threads; the transform is G g G^T, also of W's transposed
    # view (which the backward uses for U^T); and the adjoint is the transpose:
    # <U(W), gU> = <W, U^T(gU)>.
    import numba
    from nnlite.backends.numba import winograd as nb

    rng = np.random.default_rng(12)
    W = rng.standard_normal((9, 13, 3, 3)).astype(dtype)
    gUT = rng.standard_normal((3, 16, 13, 9)).astype(dtype)  # 3 blocks' partial sums of gU^T
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    gWs = []
    for min_threaded in (1 << 30, 0):  # one thread; the threads
        monkeypatch.setattr(nb, "WINOGRAD_FILTERS_MIN_THREADED", min_threaded)
        gWs.append(nb._winograd_filters_backward(gUT, W.shape, threads))
    np.testing.assert_array_equal(gWs[0], gWs[1])
    U, UT = np.empty((16, 9, 13), dtype), np.empty((16, 13, 9), dtype)
    nb._winograd_filters_kernel(W, U)
    nb._winograd_filters_kernel(W.transpose(1, 0, 2, 3), UT)  # as the backward gets U^T
    np.testing.assert_array_equal(UT, U.transpose(0, 2, 1))
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    reference = np.einsum("ai,kcij,sj->askc", G, W.astype(np.float64), G).reshape(16, 9, 13)
    np.testing.assert_allclose(U, reference, rtol=0, atol=TOLERANCE[dtype] * np.abs(W).max())
    gU = gUT.sum(axis=0).transpose(0, 2, 1)  # (16, K, C)
    lhs, rhs = np.vdot(U.astype(np.float64), gU), np.vdot(W.astype(np.float64), gWs[0])
    assert abs(lhs - rhs) <= TOLERANCE[dtype] * np.abs(U).max() * np.abs(gU).sum()
