"""Gradient checking: is every backward the true derivative of its forward?

For a function f of some inputs we pick a random upstream gradient g (never all ones: a
softmax's outputs sum to a constant, and ones would hide a wrong backward) and compare

    analytic:  the gradients that backward() produces for L = sum(f(x) * g)
    numeric:   (L(x + eps) - L(x - eps)) / (2 eps), one input element at a time

in float64, where the central difference is accurate to ~eps^2. Inputs should sit away from
kinks (ReLU at 0) and ties (two equal values in a max-pool window), where the derivative
does not exist and the two estimates may rightly disagree.

Run every op's check on a backend:  python -m nnlite.gradcheck --backend numba
"""

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from nnlite import backends
from nnlite import functional as F
from nnlite import random as nnrandom
from nnlite.autograd import Tensor, no_grad


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message says where and by how much."""


@dataclass
class GradcheckResult:
    """The worst disagreement over every checked element.

    max_rel_error is |analytic - numeric| / max(|numeric|, atol), the largest over all
    elements (the floor keeps a true zero gradient, where the central difference is rounding
    noise, from reading as 100% wrong). A pass means max_rel_error <= about rtol.
    """

    ok: bool
    max_abs_error: float
    max_rel_error: float
    where: str  # "input 1, index (0, 2, 3, 1)": where the absolute error is largest

    def __str__(self):
        status = "ok" if self.ok else "FAILED"
        return (f"{status}: max abs error {self.max_abs_error:.2e}, "
                f"max rel error {self.max_rel_error:.2e} at {self.where}")


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_on_failure=True):
    """Compare backward() with central differences for `fn(*inputs)`.

    inputs: arrays (float64 for a meaningful check; integer arrays are passed through and not
    checked) or Tensors (used as they are, e.g. a module's own Parameters, and perturbed in
    place). fn must be deterministic given nnlite's random seed: the seed is reset before every
    call, so dropout draws the same mask each time.
    Returns a GradcheckResult; raises GradcheckError when the check fails (unless told not to).
    """
    tensors = []
    for x in inputs:
        if isinstance(x, Tensor) or backends.is_array(x):
            x = x if isinstance(x, Tensor) else Tensor(x)
            x.requires_grad = x.dtype.kind == "f"
            x.grad = None
        tensors.append(x)  # anything else (e.g. the module under test) is passed through

    def evaluate():
        nnrandom.seed(seed)
        return fn(*tensors)

    y = evaluate()
    xp = backends.get_array_module(y.data)
    upstream = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(y.dtype)
    upstream = xp.asarray(upstream)
    y.backward(upstream)
    analytic = [getattr(t, "grad", None) for t in tensors]

    def loss():
        with no_grad():
            return float((evaluate().data * upstream).sum())

    worst_abs, worst_rel, where, ok = 0.0, 0.0, "nowhere", True
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor) or not t.requires_grad:
            continue
        flat = t.data.reshape(-1)  # a view: writing to it perturbs the input in place
        grad = analytic[k]
        if grad is None:
            grad = xp.zeros_like(t.data)
        grad = backends.to_numpy(grad).reshape(-1)
        for i in range(flat.size):
            original = float(flat[i])
            flat[i] = original + eps
            plus = loss()
            flat[i] = original - eps
            minus = loss()
            flat[i] = original
            numeric = (plus - minus) / (2 * eps)
            error = abs(float(grad[i]) - numeric)
            if error > atol + rtol * abs(numeric):
                ok = False
            worst_rel = max(worst_rel, error / max(abs(numeric), atol))
            if error > worst_abs:
                index = np.unravel_index(i, t.shape)
                worst_abs, where = error, f"input {k}, index {tuple(int(j) for j in index)}"
    result = GradcheckResult(ok, worst_abs, worst_rel, where)
    if not ok and raise_on_failure:
        raise GradcheckError(str(result))
    return result


# -- the cases: every op and layer, with inputs kept away from kinks and ties ------------------
def _distinct(rng, shape):
    """Values with |v| in [0.1, 1], all different: no ties in any max-pool window and none
    near 0, where ReLU has its kink."""
    size = int(np.prod(shape))
    magnitudes = np.linspace(0.1, 1.0, size)
    signs = np.where(np.arange(size) % 2 == 0, 1.0, -1.0)
    return rng.permutation(magnitudes * signs).reshape(shape)


CLASS_WEIGHTS = np.linspace(0.5, 2.0, 7)  # constants for the weighted loss case
WING_WEIGHTS = np.array([1.0, 0.0, 0.5, 2.0, 1.0])  # row 1 has no label: it must drop out
BCE_TARGETS = np.array([1.0, 0.0, 0.3, 1.0, 0.0])
BCE_WEIGHTS = np.array([1.0, 2.0, 0.5, 0.0, 1.0])  # row 3 weighs nothing: it must drop out


def _wing_inputs(rng, shape=(5, 6)):
    """(pred, target) whose differences avoid the wing loss's kinks at 0 and at |d| = 1
    (the width the case uses), half of them on each side of it."""
    target = rng.standard_normal(shape)
    size = int(np.prod(shape))
    magnitudes = np.concatenate([np.linspace(0.1, 0.8, size - size // 2),
                                 np.linspace(1.2, 2.5, size // 2)])
    signs = np.where(np.arange(size) % 2 == 0, 1.0, -1.0)
    return [target + rng.permutation(magnitudes * signs).reshape(shape), target]


def op_cases():
    """(name, fn, make_inputs(rng) -> list of float64 arrays) for every op and layer.

    Shared by the test suite (on every backend) and by `python -m nnlite.gradcheck`.
    """
    from nnlite import layers

    def labels(n, k):
        return lambda rng: rng.integers(0, k, size=n)

    def module_case(make_module, x_shape, positive=False):
        """Check a layer: its input and all its own parameters (in float64)."""

        def make(rng):
            module = make_module().astype(np.float64)
            x = _distinct(rng, x_shape)
            return [np.abs(x) if positive else x] + module.parameters() + [module]

        def fn(x, *params_and_module):
            return params_and_module[-1](x)

        return fn, make

    cases = [
        ("add", lambda a, b: a + b, lambda r: [r.standard_normal((3, 4)), r.standard_normal((4,))]),
        ("sub", lambda a, b: a - b, lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 1))]),
        ("mul", lambda a, b: a * b, lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4))]),
        ("div", lambda a, b: a / b, lambda r: [r.standard_normal((3, 4)), r.uniform(1, 2, (3, 4))]),
        ("pow", lambda a: a**3, lambda r: [r.standard_normal((5,))]),
        ("exp_log", lambda a: (a.exp() + 1.0).log(), lambda r: [r.standard_normal((2, 3))]),
        ("matmul", lambda a, b: a @ b, lambda r: [r.standard_normal((3, 4)), r.standard_normal((4, 5))]),
        ("sum_axis", lambda a: a.sum(axis=1), lambda r: [r.standard_normal((3, 4, 2))]),
        ("mean", lambda a: a.mean(axis=(0, 2), keepdims=True), lambda r: [r.standard_normal((3, 4, 2))]),
        ("reshape_transpose", lambda a: a.reshape(4, 6).transpose(1, 0),
         lambda r: [r.standard_normal((2, 3, 4))]),
        ("getitem", lambda a: a[np.array([0, 2, 2]), 1:3], lambda r: [r.standard_normal((4, 5))]),
        ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=1, pad=1),
         lambda r: [r.standard_normal((2, 3, 5, 5)), r.standard_normal((4, 3, 3, 3)), r.standard_normal(4)]),
        ("conv2d_stride2_same", lambda x, w: F.conv2d(x, w, stride=2, pad="same"),
         lambda r: [r.standard_normal((2, 2, 7, 6)), r.standard_normal((3, 2, 4, 4))]),
        ("conv2d_pad_pair", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), pad=(1, 0)),
         lambda r: [r.standard_normal((1, 2, 6, 5)), r.standard_normal((2, 2, 3, 2)), r.standard_normal(2)]),
        ("conv2d_groups2", lambda x, w, b: F.conv2d(x, w, b, pad=1, groups=2),
         lambda r: [r.standard_normal((2, 4, 5, 4)), r.standard_normal((6, 2, 3, 3)), r.standard_normal(6)]),
        ("conv2d_depthwise_stride2", lambda x, w: F.conv2d(x, w, stride=2, pad=1, groups=3),
         lambda r: [r.standard_normal((2, 3, 6, 5)), r.standard_normal((6, 1, 3, 3))]),
        ("max_pool2d", lambda x: F.max_pool2d(x, 2), lambda r: [_distinct(r, (2, 3, 4, 6))]),
        ("max_pool2d_k3s2_same", lambda x: F.max_pool2d(x, 3, 2, pad="same"),
         lambda r: [_distinct(r, (2, 2, 7, 8))]),
        ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, pad=1), lambda r: [r.standard_normal((2, 2, 5, 6))]),
        ("global_avg_pool2d", F.global_avg_pool2d, lambda r: [r.standard_normal((2, 3, 4, 5))]),
        ("linear", F.linear, lambda r: [r.standard_normal((4, 5)), r.standard_normal((3, 5)), r.standard_normal(3)]),
        ("relu", F.relu, lambda r: [_distinct(r, (3, 7))]),
        ("softmax", F.softmax, lambda r: [r.standard_normal((3, 5))]),
        ("log_softmax", F.log_softmax, lambda r: [r.standard_normal((3, 5)) * 3]),
        ("dropout", lambda x: F.dropout(x, 0.4, train=True), lambda r: [r.standard_normal((4, 6))]),
        ("flatten", F.flatten, lambda r: [r.standard_normal((2, 3, 2, 2))]),
        ("local_response_norm", lambda x: F.local_response_norm(x, 5, 1e-1, 0.75, 2.0),
         lambda r: [r.standard_normal((2, 7, 3, 3)) * 2]),
        ("local_response_norm_tflearn", lambda x: F.local_response_norm(x, 11, 1.1e-1, 0.75, 1.0),
         lambda r: [r.standard_normal((2, 13, 2, 2)) * 2]),
        ("batch_norm_train_4d", lambda x, g, b: F.batch_norm(x, g, b, train=True),
         lambda r: [r.standard_normal((3, 2, 3, 3)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)]),
        ("batch_norm_train_2d", lambda x, g, b: F.batch_norm(x, g, b, train=True),
         lambda r: [r.standard_normal((5, 3)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)]),
        ("batch_norm_relu_train_4d", lambda x, g, b: F.batch_norm(x, g, b, train=True, relu=True),
         lambda r: [r.standard_normal((3, 2, 3, 3)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)]),
        ("batch_norm_relu_eval", lambda x, g, b: F.batch_norm(
            x, g, b, x.data[0, :, 0, 0] * 0 + 0.3, x.data[0, :, 0, 0] * 0 + 1.7, train=False,
            relu=True),
         lambda r: [r.standard_normal((2, 3, 2, 2)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)]),
        ("batch_norm_relu_eval_2d", lambda x, g, b: F.batch_norm(
            x, g, b, x.data[0] * 0 + 0.3, x.data[0] * 0 + 1.7, train=False, relu=True),
         lambda r: [r.standard_normal((5, 3)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)]),
        ("batch_norm_eval", lambda x, g, b: F.batch_norm(
            x, g, b, x.data[0, :, 0, 0] * 0 + 0.3, x.data[0, :, 0, 0] * 0 + 1.7, train=False),
         lambda r: [r.standard_normal((2, 3, 2, 2)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)]),
        ("softmax_cross_entropy", lambda z, y: F.softmax_cross_entropy(z, y),
         lambda r: [r.standard_normal((6, 7)), r.integers(0, 7, 6)]),
        ("softmax_cross_entropy_weighted_smoothed", lambda z, y: F.softmax_cross_entropy(
            z, y, class_weights=backends.to_device(CLASS_WEIGHTS, z.device), label_smoothing=0.1),
         lambda r: [r.standard_normal((6, 7)), r.integers(0, 7, 6)]),
        ("soft_target_cross_entropy_T3", lambda z, q: F.soft_target_cross_entropy(z, q, 3.0),
         lambda r: [r.standard_normal((5, 7)) * 2, r.dirichlet(np.ones(7), 5)]),
        ("wing_loss_masked", lambda p, t: F.wing_loss(
            p, t, backends.to_device(WING_WEIGHTS, p.device), width=1.0, curvature=0.25),
         _wing_inputs),
        ("binary_cross_entropy_with_logits", lambda z: F.binary_cross_entropy_with_logits(
            z, backends.to_device(BCE_TARGETS, z.device),
            backends.to_device(BCE_WEIGHTS, z.device)),
         lambda r: [r.standard_normal(5) * 3]),
    ]
    layer_cases = [
        ("layer_Conv2d_same", lambda: layers.Conv2d(2, 3, 3, pad="same"), (2, 2, 4, 4)),
        ("layer_Linear", lambda: layers.Linear(5, 3, init="glorot"), (4, 5)),
        ("layer_BatchNorm2d", lambda: layers.BatchNorm2d(3), (4, 3, 2, 2)),
        ("layer_BatchNorm1d", lambda: layers.BatchNorm1d(3), (4, 3)),
        ("layer_small_cnn", lambda: layers.Sequential(
            layers.Conv2d(1, 3, 3, pad=1), layers.BatchNorm2d(3), layers.ReLU(),
            layers.MaxPool2d(2), layers.LocalResponseNorm(3, 0.1, 0.75, 2.0), layers.Flatten(),
            layers.Dropout(0.3), layers.Linear(12, 4)), (2, 1, 4, 4)),
        ("layer_Residual_separable", lambda: layers.Residual(
            layers.Sequential(layers.Conv2d(2, 2, 3, pad=1, groups=2, bias=False),
                              layers.Conv2d(2, 3, 1), layers.BatchNorm2d(3), layers.ReLU()),
            layers.Conv2d(2, 3, 1, bias=False)), (2, 2, 4, 4)),
    ]
    for name, make_module, shape in layer_cases:
        fn, make = module_case(make_module, shape)
        cases.append((name, fn, make))
    return cases


def check_all(device="cpu", verbose=False):
    """Run every case on `device`; returns a list of (name, GradcheckResult)."""
    results = []
    for name, fn, make_inputs in op_cases():
        rng = np.random.default_rng(0)
        nnrandom.seed(0)
        inputs = make_inputs(rng)
        inputs = [_to(x, device) for x in inputs]
        result = gradcheck(fn, inputs, raise_on_failure=False)
        results.append((name, result))
        if verbose:
            print(f"{name:42s} {result}")
    return results


def _to(x, device):
    """Inputs of a case on `device`: arrays are moved; a module is moved whole."""
    from nnlite.layers import Module

    if isinstance(x, Module):
        return x.to(device)
    if isinstance(x, Tensor):
        return x  # a module's Parameter: moved with its module above (same object)
    return backends.to_device(x, device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnlite.gradcheck",
        description="Gradient-check every nnlite op and layer (float64 central differences).",
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except backends.BackendError as err:  # (`emotion gradcheck` reports it in its own words)
        print(f"gradcheck: {err}", file=sys.stderr)
        return 2


def add_arguments(parser):
    parser.add_argument("--backend", default=backends.current(), choices=backends.NAMES,
                        help="backend to check (default: the current one)")


def run(args) -> int:
    backends.use(args.backend)  # a BackendError says why the backend cannot run here
    device = backends.default_device()
    import inspect  # the tolerances printed are gradcheck()'s own defaults, not a copy

    signature = inspect.signature(gradcheck).parameters
    eps, atol, rtol = (signature[k].default for k in ("eps", "atol", "rtol"))
    print(f"Gradient check of every op and layer on backend {args.backend!r} ({device}), "
          "in float64.\n"
          "For each case: L = sum(f(x) * g) with a random g. backward() gives dL/dx; the\n"
          f"central difference (L(x + eps) - L(x - eps)) / (2 eps), eps = {eps:g}, estimates "
          "it\none element at a time. A case passes when, for every element,\n"
          f"|analytic - numeric| <= {atol:g} + {rtol:g} * |numeric|; the relative error is\n"
          f"|analytic - numeric| / max(|numeric|, {atol:g}).\n")
    print(f"{'case':42s} {'worst |analytic - numeric|':>26s} {'worst relative':>14s}  result")
    failures = 0
    results = check_all(device)
    for name, result in results:
        failures += not result.ok
        verdict = "ok" if result.ok else f"FAILED at {result.where}"
        print(f"{name:42s} {result.max_abs_error:26.1e} {result.max_rel_error:14.1e}  {verdict}")
    print(f"\n{len(results) - failures} passed, {failures} failed"
          + (": a backward above does not match its forward." if failures
             else ": every backward matches its forward."))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
