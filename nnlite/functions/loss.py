"""Softmax cross-entropy: the loss of a classifier, fused with its softmax for stability."""

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
            self.probs, self.labels, self.sample_weights, self.smoothing, gloss
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


def accuracy(logits, labels) -> float:
    """Fraction of rows whose largest logit is at the label (a metric, not differentiable)."""
    data = logits.data if isinstance(logits, Tensor) else logits
    labels = labels.data if isinstance(labels, Tensor) else labels
    return float((data.argmax(axis=1) == labels).mean())


