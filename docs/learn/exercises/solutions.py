"""Solutions to the exercises, for the checker's own test. Try yourself first."""

import numpy as np


def avg_pool_backward(gy, x_shape, k):
    # every pixel of a window gets an equal share of the window's gradient
    return np.repeat(np.repeat(gy / (k * k), k, axis=2), k, axis=3).reshape(x_shape)
