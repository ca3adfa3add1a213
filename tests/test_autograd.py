"""The autograd engine: graph building, backward order, accumulation, no_grad, gradcheck."""

import numpy as np
import pytest

import nnlite
import nnlite.functional as F
from nnlite import Tensor
from nnlite.autograd import Function


def test_chain_rule_through_a_shared_node():
    # y = (x*x) + (x*x*x): x is used on several paths; gradients must add up.
    x = Tensor(np.array([2.0]), requires_grad=True)
    a = x * x
    y = a + a * x
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2.0 + 3 * 2.0**2)


def test_broadcast_gradients_are_summed_back():
    x = Tensor(np.ones((3, 4)), requires_grad=True)
    b = Tensor(np.ones(4), requires_grad=True)
    (x + b).sum().backward()
    np.testing.assert_array_equal(b.grad, np.full(4, 3.0))


def test_leaf_gradients_accumulate_across_backward_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])


def test_no_grad_builds_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with nnlite.no_grad():
        y = x * 2.0
    assert y.creator is None and not y.requires_grad


def test_backward_twice_through_a_freed_graph_is_a_clear_error():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_python_scalars_do_not_promote_float32():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * 0.5 + 1.0) / 3.0 - 2.0
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_tensor_from_a_list_is_float32():
    assert Tensor([1.0, 2.0]).dtype == np.float32


def test_indexing_and_shape_ops():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    y = x.reshape(6, 4).transpose(1, 0)[1:3]
    assert y.shape == (2, 6)
    y.sum().backward()
    assert x.grad.sum() == 12.0


def test_a_deep_graph_does_not_hit_the_recursion_limit():
    x = Tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


class WrongSquare(Function):
    """x**2 with a deliberately wrong backward (2x + 1): gradcheck must catch it."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * (2 * self.x + 1)


def test_gradcheck_catches_a_wrong_backward_and_says_where():
    x = np.random.default_rng(0).standard_normal((3, 2))
    with pytest.raises(nnlite.GradcheckError, match="input 0, index"):
        nnlite.gradcheck(lambda t: WrongSquare()(t), [x])
    result = nnlite.gradcheck(lambda t: t * t, [x])
    assert result.ok and result.max_abs_error < 1e-6


def test_gradcheck_reports_the_real_relative_error_of_a_pass():
    # it used to be recorded only above atol, so every passing check printed exactly 0
    x = np.random.default_rng(0).standard_normal((3, 2))
    result = nnlite.gradcheck(lambda t: (t * t).exp(), [x])
    assert result.ok and 0 < result.max_rel_error < 1e-4
    wrong = nnlite.gradcheck(lambda t: WrongSquare()(t), [x], raise_on_failure=False)
    assert not wrong.ok and wrong.max_rel_error > 0.1  # off by 1 on gradients of size ~2x


def test_gradcheck_command_passes_on_numpy(capsys):
    from nnlite.gradcheck import main

    assert main(["--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "conv2d" in out and "0 failed" in out


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(nnlite.backends.BackendError, match="unknown backend"):
        nnlite.use("tpu")


def test_accuracy_metric():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert F.accuracy(logits, np.array([1, 0, 0])) == pytest.approx(2 / 3)


def test_an_unusable_nnlite_backend_env_is_a_clean_cli_error():
    import subprocess
    import sys

    env = {**__import__("os").environ, "NNLITE_BACKEND": "tpu"}
    done = subprocess.run([sys.executable, "-m", "emotion", "gradcheck"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown backend 'tpu'" in done.stderr and "Traceback" not in done.stderr


def test_numpy_scalars_take_the_tensor_dtype():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * np.float64(0.5)).sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32


def test_labels_out_of_range_and_one_value_batch_norm_are_clear_errors():
    with pytest.raises(ValueError, match="labels must be in 0..6"):
        F.softmax_cross_entropy(np.zeros((2, 7), np.float32), np.array([0, 7]))
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(np.ones((1, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32))


def test_eval_batch_norm_backward_uses_the_statistics_of_its_forward():
    # The backward pass recomputes xhat from the mean its forward used; a training-mode call
    # of the same layer in between (which moves the running statistics in place) must not
    # change the gradient of the earlier eval-mode call.
    import numpy as np

    from nnlite import layers, Tensor

    rng = np.random.default_rng(0)
    layer = layers.BatchNorm2d(3)
    running_mean, running_var = layer._buffers["running_mean"], layer._buffers["running_var"]
    running_mean[...] = rng.standard_normal(3).astype(np.float32)
    x = Tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), requires_grad=True)
    gy = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)

    def eval_gradients(run_between):
        for p in layer.parameters():
            p.zero_grad()
        x.zero_grad()
        layer.eval()
        y = layer(x)
        if run_between:
            layer.train()
            layer(Tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 5 + 3))
        y.backward(gy)
        return [g.copy() for g in (x.grad, layer.gamma.grad)]

    saved = (running_mean.copy(), running_var.copy())
    want = eval_gradients(run_between=False)
    running_mean[...], running_var[...] = saved
    got = eval_gradients(run_between=True)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_conv2d_weight_gradient_without_the_input_gradient():
    # An input that takes no gradient (the images) makes Conv2d skip gx; gW must not change.
    import nnlite.functional as F

    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    gy = rng.standard_normal((2, 4, 6, 5))
    grads = []
    for x_takes_grad in (True, False):
        xt, Wt = Tensor(x, requires_grad=x_takes_grad), Tensor(W, requires_grad=True)
        (F.conv2d(xt, Wt, pad=1) * Tensor(gy)).sum().backward()
        assert (xt.grad is not None) == x_takes_grad
        grads.append(Wt.grad)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)


@pytest.mark.parametrize("train", [True, False])
def test_sequential_fuses_batch_norm_and_relu_without_changing_anything_else(train):
    # Sequential runs BatchNorm2d + ReLU as one op (batch_norm(relu=True)). The model must not
    # notice: same output, same gradients, same running statistics, same parameter names as
    # the two layers run one after the other.
    from nnlite import layers as L
    from nnlite.functions.normalization import BatchNorm

    def build():
        nnlite.seed(0)
        return L.Sequential(L.Conv2d(2, 4, 3, pad=1), L.BatchNorm2d(4), L.ReLU(), L.Flatten(),
                            L.Linear(4 * 5 * 5, 3))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((6, 3)).astype(np.float32)
    # eval uses the running statistics: give them values other than 0 and 1
    running = rng.standard_normal(4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    results = []
    for fused in (True, False):
        model = build().train(train)
        if not train:
            model[1]._buffers["running_mean"][...], model[1]._buffers["running_var"][...] = running
        created = []
        original_call = BatchNorm.__call__

        def spy(self, *inputs):
            created.append(self.relu)
            return original_call(self, *inputs)

        BatchNorm.__call__ = spy
        try:
            if fused:
                y = model(Tensor(x))
            else:  # the layers one by one, as nnlite.viz and Grad-CAM run them
                y = Tensor(x)
                for layer in model.layers:
                    y = layer(y)
        finally:
            BatchNorm.__call__ = original_call
        assert created == [fused]  # the fused op ran only in Sequential's own forward
        y.backward(gy)
        results.append((y.data, {n: p.grad for n, p in model.named_parameters()},
                        [b.copy() for _, b in model.named_buffers()]))
    (y_fused, g_fused, b_fused), (y_apart, g_apart, b_apart) = results
    with nnlite.no_grad():  # the ReLU has work to do: a good share of its input is negative
        assert (model[1](model[0](Tensor(x))).data < 0).mean() > 0.2
    np.testing.assert_allclose(y_fused, y_apart, rtol=1e-6, atol=1e-6)
    assert list(g_fused) == list(g_apart) == ["0.W", "0.b", "1.gamma", "1.beta", "4.W", "4.b"]
    for name in g_fused:
        np.testing.assert_allclose(g_fused[name], g_apart[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(b_fused, b_apart):
        np.testing.assert_array_equal(a, b)


def test_sequential_does_not_fuse_a_batch_norm_subclass_with_its_own_forward():
    # A subclass that overrides forward may do more than batch norm: it runs as written, and
    # the ReLU after it runs as a layer of its own.
    from nnlite import layers as L

    class ShiftedBatchNorm(L.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) + 1.0

    nnlite.seed(0)
    model = L.Sequential(ShiftedBatchNorm(2), L.ReLU())
    x = Tensor(np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32))
    want = np.maximum(F.batch_norm(x, model[0].gamma, model[0].beta).data + 1.0, 0)
    np.testing.assert_allclose(model(x).data, want, rtol=1e-6, atol=1e-6)


def test_no_grad_belongs_to_the_thread_that_asked_for_it():
    """A no_grad in one thread (a server's video job predicting) must neither turn off the
    graph of another (explain's backward pass) nor, interleaved, leave it off for good."""
    import threading

    import nnlite

    inside, release = threading.Event(), threading.Event()

    def predict_in_another_thread():
        with nnlite.no_grad():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=predict_in_another_thread)
    worker.start()
    inside.wait(5)
    try:
        assert nnlite.is_grad_enabled()  # the other thread's no_grad is not ours
        x = nnlite.Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
        (x * x).sum().backward()
        np.testing.assert_array_equal(x.grad, [2.0, 4.0])
        with nnlite.no_grad():
            release.set()
            worker.join(5)  # the other thread leaves its no_grad while we are in ours
        assert nnlite.is_grad_enabled()  # ... and ours ends as it began
    finally:
        release.set()
        worker.join(5)
