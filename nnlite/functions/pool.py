"""Pooling: max (with the winner's position saved), average, and global average."""

from nnlite.autograd import Function
from nnlite.backends import get_array_module, kernels_for
from nnlite.functions.conv import as_pair, resolve_padding


class _Pool2d(Function):
    """What every windowed pooling op holds: window size, stride (default: the window, so
    windows do not overlap) and padding (resolved against the input's size in forward)."""

    def __init__(self, kernel_size, stride=None, pad=0):
        self.kernel = as_pair(kernel_size)
        self.stride = as_pair(stride if stride is not None else kernel_size)
        self.pad = pad

    def _resolve(self, x):
        self.pad = resolve_padding(self.pad, x.shape[2:], self.kernel, self.stride)
        self.x_shape = x.shape


class MaxPool2d(_Pool2d):
    """y[n, c, i, j] = max over the window (i*SH .. i*SH+KH-1, j*SW .. j*SW+KW-1) of x_pad.

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW). Padding is -inf, so it never wins (which is
    also what TensorFlow's "same" max-pool does). Saved: the argmax of each window; backward
    sends each gradient to that one pixel. Ties go to the first position in the window.
    """

    def forward(self, x):
        self._resolve(x)
        y, self.argmax = kernels_for(x).max_pool_forward(x, *self.kernel, self.stride, self.pad)
        return y

    def backward(self, gy):
        return kernels_for(gy).max_pool_backward(
            gy, self.argmax, self.x_shape, *self.kernel, self.stride, self.pad
        )


class AvgPool2d(_Pool2d):
    """y = mean of each window (zero padding counts in the mean, like PyTorch's default).

    Built from im2col/col2im: forward is the mean of each column, backward spreads gy / (KH*KW)
    back over the window.
    """

    def forward(self, x):
        self._resolve(x)
        n, c, h, w = x.shape
        kh, kw = self.kernel
        col = kernels_for(x).im2col(x.reshape(n * c, 1, h, w), kh, kw, self.stride, self.pad)
        self.out_hw = _out_hw(x.shape, self.kernel, self.stride, self.pad)
        return col.mean(axis=0).reshape(n, c, *self.out_hw)

    def backward(self, gy):
        xp = get_array_module(gy)
        n, c, h, w = self.x_shape
        kh, kw = self.kernel
        gcol = xp.broadcast_to(gy.reshape(1, -1) / (kh * kw), (kh * kw, gy.size))
        gx = kernels_for(gy).col2im(gcol, (n * c, 1, h, w), kh, kw, self.stride, self.pad)
        return gx.reshape(self.x_shape)


def _out_hw(x_shape, kernel, stride, pad):
    h, w = x_shape[2:]
    return (
        (h + pad[0] + pad[1] - kernel[0]) // stride[0] + 1,
        (w + pad[2] + pad[3] - kernel[1]) // stride[1] + 1,
    )


class GlobalAvgPool2d(Function):
    """y[n, c] = mean over H and W of x[n, c]. Shapes: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        self.x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, gy):
        xp = get_array_module(gy)
        n, c, h, w = self.x_shape
        return xp.broadcast_to((gy / (h * w))[:, :, None, None], self.x_shape).copy()


def max_pool2d(x, kernel_size, stride=None, pad=0):
    """Max pooling; stride defaults to kernel_size; pad an int, a pair, (top, bottom, left,
    right), "same" or "valid"."""
    return MaxPool2d(kernel_size, stride, pad)(x)


def avg_pool2d(x, kernel_size, stride=None, pad=0):
    return AvgPool2d(kernel_size, stride, pad)(x)


def global_avg_pool2d(x):
    return GlobalAvgPool2d()(x)
