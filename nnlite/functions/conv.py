"""2-D convolution as im2col + one batched matrix product.

Each KHxKW window of the input is unfolded into a column (im2col); the convolution is then
W(OC, C*KH*KW) @ col(N, C*KH*KW, OH*OW), which is exactly what BLAS/cuBLAS is fastest at.
Backward is two more products and col2im, the adjoint of im2col.
"""

from nnlite.autograd import Function
from nnlite.backends import get_array_module, kernels_for


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def same_padding(size: int, kernel: int, stride: int):
    """TensorFlow's "same": output = ceil(size / stride); an odd total puts the extra pixel
    at the end (bottom/right), as TensorFlow does."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(pad, in_hw, kernel_hw, stride_hw):
    """pad as an int, a pair (pad_h, pad_w), a 4-tuple (top, bottom, left, right) or "same"
    (or "valid") -> (top, bottom, left, right)."""
    if isinstance(pad, str):
        if pad.lower() == "valid":
            return (0, 0, 0, 0)
        if pad.lower() != "same":
            raise ValueError(f"pad must be an int, a pair, 'same' or 'valid', got {pad!r}")
        top, bottom = same_padding(in_hw[0], kernel_hw[0], stride_hw[0])
        left, right = same_padding(in_hw[1], kernel_hw[1], stride_hw[1])
        return (top, bottom, left, right)
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[0], pad[1], pad[1])
    if len(pad) == 4:
        return tuple(pad)
    raise ValueError(f"pad must be an int, a pair, a 4-tuple, 'same' or 'valid', got {pad!r}")


class Conv2d(Function):
    """y = conv2d(x, W) + b.

    Shapes: x (N, C, H, W), W (OC, C, KH, KW), b (OC,) -> y (N, OC, OH, OW),
            OH = (H + top + bottom - KH) // SH + 1 (likewise OW).
    Formula: y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] * x_pad[n, c, i*SH + u, j*SW + v]
    Saved for backward: the im2col matrix `col` and W.
    """

    def __init__(self, stride=1, pad=0):
        self.stride, self.pad = _pair(stride), pad

    def forward(self, x, W, b=None):
        kernels = kernels_for(x)
        n, c, h, w = x.shape
        oc, wc, kh, kw = W.shape
        if wc != c:
            raise ValueError(f"conv2d: input has {c} channels, weights expect {wc}")
        self.pad = resolve_padding(self.pad, (h, w), (kh, kw), self.stride)
        self.x_shape = x.shape
        self.col = kernels.im2col(x, kh, kw, self.stride, self.pad)  # (N, C*KH*KW, P)
        self.W = W
        y = W.reshape(oc, -1) @ self.col  # (OC, K) @ (N, K, P) -> (N, OC, P)
        oh = (h + self.pad[0] + self.pad[1] - kh) // self.stride[0] + 1
        ow = (w + self.pad[2] + self.pad[3] - kw) // self.stride[1] + 1
        y = y.reshape(n, oc, oh, ow)
        if b is not None:
            y += b.reshape(1, oc, 1, 1)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        n, oc = gy.shape[:2]
        kh, kw = self.W.shape[2:]
        gy = gy.reshape(n, oc, -1)  # (N, OC, P)
        # dW[o, k] = sum over images n and positions p of gy[n, o, p] * col[n, k, p]
        gW = xp.tensordot(gy, self.col, axes=([0, 2], [0, 2])).reshape(self.W.shape)
        gb = gy.sum(axis=(0, 2))
        gcol = self.W.reshape(oc, -1).T @ gy  # (K, OC) @ (N, OC, P) -> (N, K, P)
        gx = kernels_for(gy).col2im(gcol, self.x_shape, kh, kw, self.stride, self.pad)
        return gx, gW, gb


def conv2d(x, W, b=None, stride=1, pad=0):
    """2-D convolution (cross-correlation, as in every DL library). See `Conv2d`.

    pad: an int, a pair (pad_h, pad_w), (top, bottom, left, right), "valid", or "same"
    (TensorFlow semantics: output size ceil(H / stride), odd totals padded more at the end).
    """
    function = Conv2d(stride, pad)
    return function(x, W) if b is None else function(x, W, b)
