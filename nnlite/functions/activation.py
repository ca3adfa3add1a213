"""ReLU, softmax, log-softmax, dropout and flatten."""

from nnlite.autograd import Function
from nnlite.backends import get_array_module, kernels_for


class ReLU(Function):
    """y = max(x, 0). Saves y: the gradient passes only where y > 0, i.e. where x was positive."""

    def forward(self, x):
        self.y = kernels_for(x).relu_forward(x)
        return self.y

    def backward(self, gy):
        return kernels_for(gy).relu_backward(gy, self.y)


class LogSoftmax(Function):
    """y = x - logsumexp(x) along axis 1. Saves y.

    dL/dx = gy - softmax(x) * sum(gy) (softmax = exp(y)).
    """

    def forward(self, x):
        self.y = kernels_for(x).log_softmax(x)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=1, keepdims=True)


class Softmax(Function):
    """p = exp(x - max) / sum(exp(x - max)) along axis 1. Saves p.

    dL/dx = p * (gy - sum(gy * p)): the Jacobian diag(p) - p p^T applied to gy.
    """

    def forward(self, x):
        xp = get_array_module(x)
        self.p = xp.exp(kernels_for(x).log_softmax(x))
        return self.p

    def backward(self, gy):
        return self.p * (gy - (gy * self.p).sum(axis=1, keepdims=True))


class Dropout(Function):
    """Inverted dropout: y = x * mask, mask = 0 with probability p, else 1 / (1 - p).

    `p` is the probability to DROP a unit (PyTorch's convention). TFLearn's
    `dropout(x, 0.3)` meant KEEP 0.3, i.e. p = 0.7 here. Scaling the kept units by 1/(1-p)
    at training time means inference needs no rescaling. Saves the mask.
    """

    def __init__(self, p):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout: p is the drop probability and must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        self.mask = kernels_for(x).dropout_mask(x.shape, self.p, x.dtype, x)
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def relu(x):
    return ReLU()(x)


def softmax(x):
    """Softmax over axis 1 of (N, K) logits."""
    return Softmax()(x)


def log_softmax(x):
    return LogSoftmax()(x)


def dropout(x, p, train=True):
    """Inverted dropout with DROP probability p; the identity when not training or p == 0."""
    if not train or p == 0.0:
        return x
    return Dropout(p)(x)


def flatten(x):
    """(N, ...) -> (N, prod(...)), keeping the batch axis."""
    return x.reshape(x.shape[0], -1)
