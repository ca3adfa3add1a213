"""Batch normalization and local response normalization."""

from nnlite.autograd import Function
from nnlite.backends import kernels_for


class BatchNorm(Function):
    """Batch normalization over the batch (and spatial) axes, per channel.

    Shapes: x (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var (C,).
    Train: mean, var = statistics of this batch (biased var), and the running statistics move
    towards them: running = (1 - momentum) * running + momentum * batch (unbiased var, as in
    PyTorch). Eval: the running statistics are used instead.
        y = gamma * (x - mean) / sqrt(var + eps) + beta
    Saved: x, gamma, the mean used and 1 / sqrt(var + eps) (the backward recomputes xhat from
    them), and beta when relu=True.

    relu=True is batch norm followed by a ReLU, as one op: y = max(that, 0). The backward
    recomputes the ReLU's mask (gamma * xhat + beta > 0) from x, so nothing more is saved,
    and the faster backends do both in the passes batch norm makes anyway.
    """

    def __init__(self, running_mean, running_var, train, momentum=0.1, eps=1e-5, relu=False):
        self.running_mean, self.running_var = running_mean, running_var
        self.train, self.momentum, self.eps, self.relu = train, momentum, eps, relu

    def forward(self, x, gamma, beta):
        kernels = kernels_for(x)
        if self.train:
            if x.size // x.shape[1] < 2:
                raise ValueError(f"batch_norm in training needs more than one value per channel, "
                                 f"got input of shape {x.shape} (use a batch of 2 or more)")
            mean, var = kernels.batch_norm_stats(x)
            if self.running_mean is not None:
                kernels.batch_norm_running_update(self.running_mean, self.running_var, mean, var,
                                                  self.momentum, x.size // x.shape[1])
        else:
            # copies: backward recomputes xhat from this mean, and the buffers can change
            # before it runs (a training-mode call of the same layer updates them in place)
            mean, var = self.running_mean.copy(), self.running_var.copy()
        y, self.inv_std = kernels.batch_norm_forward(x, gamma, beta, mean, var, self.eps,
                                                     self.relu)
        self.x, self.mean, self.gamma = x, mean, gamma
        self.relu_beta = beta if self.relu else None
        return y

    def backward(self, gy):
        return kernels_for(gy).batch_norm_backward(gy, self.x, self.mean, self.gamma, self.inv_std,
                                                   self.train, self.relu_beta)


class LocalResponseNorm(Function):
    """Local response normalization across channels, with PyTorch's semantics:

        y[c] = x[c] / (k + alpha / size * sum_{c' near c} x[c']^2) ** beta
    over the `size` channels c - size//2 .. c + (size-1)//2.

    TFLearn/TensorFlow write it as x / (bias + alpha_tf * sum_{|c'-c| <= r} x^2) ** beta with
    depth_radius r: that is size = 2r + 1, alpha = alpha_tf * size, k = bias. TFLearn's
    defaults (r=5, alpha=1e-4, beta=0.75, bias=1) are size=11, alpha=1.1e-3, beta=0.75, k=1.
    Saved: x, y and the denominator base `scale`.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        y, self.scale = kernels_for(x).lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self.x, self.y = x, y
        return y

    def backward(self, gy):
        return kernels_for(gy).lrn_backward(
            gy, self.x, self.y, self.scale, self.size, self.alpha, self.beta, self.k
        )


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, train=True,
               momentum=0.1, eps=1e-5, relu=False):
    """See `BatchNorm`. running_mean/var are arrays updated in place in training.
    relu=True gives relu(batch_norm(...)) as one op (the same values, fewer passes)."""
    if not train and (running_mean is None or running_var is None):
        raise ValueError("batch_norm in eval mode needs running_mean and running_var")
    return BatchNorm(running_mean, running_var, train, momentum, eps, relu)(x, gamma, beta)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """See `LocalResponseNorm` (PyTorch semantics: alpha is divided by size)."""
    return LocalResponseNorm(size, alpha, beta, k)(x)
