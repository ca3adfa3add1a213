"""Softmax cross-entropy: the loss of a classifier, fused with its softmax for stability;
against hard labels (SoftmaxCrossEntropy) or against another model's probabilities
(SoftTargetCrossEntropy, the loss of knowledge distillation). And its two-class form on one
logit, fused with the sigmoid (BinaryCrossEntropyWithLogits: is there a face?)."""

import numpy as np

from nnlite.autograd import Function, Tensor
from nnlite.backends import check_same_device, get_array_module, kernels_for


class SoftmaxCrossEntropy(Function):
    """Mean cross-entropy between softmax(logits) and (smoothed) one-hot labels.

    Shapes: logits (N, K), labels (N,) ints in 0..K-1 -> loss ().
        p = softmax(logits) (computed as exp(log_softmax): no overflow for large logits)
        q = (1 - smoothing) * onehot(label) + smoothing / K
        loss = sum_i w_i * (-sum_k q_ik log p_ik) / sum_i w_i,  w_i = class_weights[label_i]
    dloss/dlogits = w_i / sum(w) * (p - q): fusing softmax into the loss gives this simple
    form instead of a K x K Jacobian. Saved: p, the labels and the per-sample weights.
    """

    def __init__(self, labels, class_weights=None, label_smoothing=0.0):
        self.labels, self.class_weights, self.smoothing = labels, class_weights, label_smoothing

    def forward(self, logits):
        xp = get_array_module(logits)
        if self.class_weights is None:
            self.sample_weights = xp.ones(len(self.labels), dtype=logits.dtype)
        else:
            self.sample_weights = self.class_weights.astype(logits.dtype)[self.labels]
        loss, self.probs = kernels_for(logits).softmax_cross_entropy_forward(
            logits, self.labels, self.sample_weights, self.smoothing
        )
        return loss

    def backward(self, gloss):
        return kernels_for(gloss).softmax_cross_entropy_backward(
            gloss, self.probs, self.labels, self.sample_weights, self.smoothing
        )


def softmax_cross_entropy(logits, labels, class_weights=None, label_smoothing=0.0):
    """See `SoftmaxCrossEntropy`. labels: int array or Tensor (N,) on the logits' device."""
    if isinstance(labels, Tensor):
        labels = labels.data
    if isinstance(class_weights, Tensor):
        class_weights = class_weights.data
    data = logits.data if isinstance(logits, Tensor) else logits
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(f"labels must have shape ({data.shape[0]},), got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    num_classes = data.shape[1]
    # Checked on the host only: on the GPU the check would cost a device-to-host sync per step.
    if isinstance(labels, np.ndarray) and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}, got values from "
                         f"{labels.min()} to {labels.max()}")

    check_same_device([data, labels] + ([class_weights] if class_weights is not None else []),
                      op="softmax_cross_entropy")
    return SoftmaxCrossEntropy(labels, class_weights, label_smoothing)(logits)


class SoftTargetCrossEntropy(Function):
    """Mean cross-entropy between softmax(logits / T) and target probabilities q, times T^2.

    Shapes: logits (N, K), targets (N, K) with rows summing to 1 -> loss ().
        log p = log_softmax(logits / T)
        loss = -T^2 / N * sum_i sum_k q_ik log p_ik
    dloss/dlogits = T / N * (p - q): the hard-label form with q in place of the one-hot row,
    and one factor T from the inner 1/T and the T^2 outside.
    dloss/dq = -T^2 / N * log p (for completeness: a teacher's targets take no gradient).

    This is the soft half of knowledge distillation (Hinton et al., 2015): q is a trained
    teacher's softmax at the same temperature T. A temperature above 1 flattens both
    distributions, so the student also learns how the teacher ranks the wrong classes (that
    a frown is more like anger than like joy); the T^2 keeps the gradient's size
    independent of T, so the soft and the hard loss can be mixed with one weight. Up to the
    teacher's own entropy, which does not depend on the student, this is T^2 KL(q || p).
    Saved: log p and q.
    """

    def __init__(self, temperature=1.0):
        self.temperature = float(temperature)

    def forward(self, logits, targets):
        t = logits.dtype.type(self.temperature)  # a Python float would make it float64
        self.log_p, self.targets = kernels_for(logits).log_softmax(logits / t), targets
        return -(t * t / len(logits)) * (targets * self.log_p).sum()

    def backward(self, gloss):
        xp = get_array_module(gloss)
        t = self.log_p.dtype.type(self.temperature)
        scale = gloss / len(self.log_p)
        return (scale * t) * (xp.exp(self.log_p) - self.targets), -(scale * t * t) * self.log_p


def soft_target_cross_entropy(logits, targets, temperature=1.0):
    """See `SoftTargetCrossEntropy`. targets: (N, K) probabilities on the logits' device."""
    data = logits.data if isinstance(logits, Tensor) else logits
    if tuple(targets.shape) != tuple(data.shape):
        raise ValueError(f"targets must have the logits' shape {data.shape}, got {targets.shape}")
    if targets.dtype != data.dtype:
        raise TypeError(f"targets are {targets.dtype} but the logits {data.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return SoftTargetCrossEntropy(temperature)(logits, targets)


class BinaryCrossEntropyWithLogits(Function):
    """Weighted mean binary cross-entropy between sigmoid(logits) and targets in [0, 1].

    Shapes: logits (N,), targets (N,), weight (N,) >= 0 -> loss ().
        p = sigmoid(z)
        loss_i = -(t_i log p_i + (1 - t_i) log(1 - p_i)) = softplus(z_i) - t_i z_i
        loss = sum_i w_i loss_i / sum_i w_i   (0 when every weight is 0)
    softplus(z) = log(1 + e^z) is computed as max(z, 0) + log(1 + e^-|z|), which neither
    overflows for a large z nor loses the small value for a very negative one: the reason to
    fuse the sigmoid into the loss, as softmax is fused into softmax_cross_entropy.
    dloss/dz_i = w_i / sum(w) * (p_i - t_i), the same simple form as the softmax's.
    Saved: p and the normalised weights.
    """

    def __init__(self, targets, weight):
        self.targets, self.weight = targets, weight

    def forward(self, logits):
        xp = get_array_module(logits)
        dtype = logits.dtype.type
        weight = self.weight.astype(logits.dtype)
        self.scale = weight / xp.maximum(weight.sum(), dtype(1e-12))
        t = self.targets.astype(logits.dtype)
        e = xp.exp(-xp.abs(logits))  # in (0, 1]: never overflows
        softplus = xp.maximum(logits, dtype(0)) + xp.log1p(e)
        # The sigmoid from the same e: 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) below.
        self.p = xp.where(logits >= 0, dtype(1) / (dtype(1) + e), e / (dtype(1) + e))
        self.t = t
        return (self.scale * (softplus - t * logits)).sum()

    def backward(self, gloss):
        return (gloss * self.scale * (self.p - self.t),)


def binary_cross_entropy_with_logits(logits, targets, weight=None):
    """See `BinaryCrossEntropyWithLogits`. logits (N,) Tensor; targets and weight (N,) arrays
    on its device (weight None: all ones)."""
    data = logits.data if isinstance(logits, Tensor) else logits
    targets = targets.data if isinstance(targets, Tensor) else targets
    if data.ndim != 1 or tuple(targets.shape) != tuple(data.shape):
        raise ValueError(f"logits and targets must both have shape (N,), got {data.shape} "
                         f"and {targets.shape}")
    xp = get_array_module(data)
    if weight is None:
        weight = xp.ones(data.shape, dtype=data.dtype)
    weight = weight.data if isinstance(weight, Tensor) else weight
    if tuple(weight.shape) != tuple(data.shape):
        raise ValueError(f"weight must have shape {data.shape}, got {weight.shape}")
    check_same_device([data, targets, weight], op="binary_cross_entropy_with_logits")
    return BinaryCrossEntropyWithLogits(targets, weight)(logits)


def accuracy(logits, labels) -> float:
    """Fraction of rows whose largest logit is at the label (a metric, not differentiable)."""
    data = logits.data if isinstance(logits, Tensor) else logits
    labels = labels.data if isinstance(labels, Tensor) else labels
    return float((data.argmax(axis=1) == labels).mean())


