"""Fully connected layer: y = x @ W.T + b."""

from nnlite.autograd import Function


class Linear(Function):
    """y = x @ W.T + b.

    Shapes: x (N, IN), W (OUT, IN) (PyTorch's layout), b (OUT,) -> y (N, OUT).
    dL/dx = gy @ W,  dL/dW = gy.T @ x,  dL/db = sum_n gy. Saved: x and W.
    """

    def forward(self, x, W, b=None):
        self.x, self.W = x, W
        y = x @ W.T
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        return gy @ self.W, gy.T @ self.x, gy.sum(axis=0)


def linear(x, W, b=None):
    return Linear()(x, W) if b is None else Linear()(x, W, b)
