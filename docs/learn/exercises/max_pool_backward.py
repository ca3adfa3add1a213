"""Exercise: write the backward of 2D max pooling.

Forward (written for you): y[n, c, i, j] is the largest value of the k x k window of x at
(i*k, j*k), windows side by side (stride k, no padding; H and W are multiples of k).

Backward: given gy = dL/dy, shape (N, C, H/k, W/k), return gx = dL/dx, shape (N, C, H, W).
Only the largest x of a window reached y: nudging any other one changes nothing, so it gets
0, and the largest gets the window's whole gradient (chapter 5). Hint: compare x with its
window's maximum, repeated back to x's shape as avg_pool's solution repeats gy.

Check your answer from the repository root:

    python -m docs.learn.exercises.check max_pool
"""

import numpy as np


def max_pool_forward(x, k):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))


def max_pool_backward(gy, x, k):
    raise NotImplementedError("write max_pool_backward in docs/learn/exercises/max_pool_backward.py")
