"""2-D convolution as im2col + matrix products.

Each KHxKW window of the input is unfolded into a column (im2col); the convolution is then
the matrix product W(OC, C*KH*KW) @ col(C*KH*KW, N*OH*OW), which is exactly what BLAS and
cuBLAS are fastest at. Backward is two more products and col2im, the adjoint of im2col.
The kernels (numpy_kernels.conv2d_forward/backward) decide how to cut the work: the NumPy and
CUDA backends run one GEMM for the whole batch, the Numba backend one per image, or, for 3x3
stride-1 'same' layers, Winograd's F(2x2, 3x3): 16 smaller GEMMs between cheap transforms.
"""

from nnlite.autograd import Function
from nnlite.backends import kernels_for


def as_pair(v):
    """An int as (v, v), for height and width; a pair as a tuple."""
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
    """y = conv2d(x, W) + b, optionally grouped.

    Shapes: x (N, C, H, W), W (OC, C/G, KH, KW), b (OC,) -> y (N, OC, OH, OW), G = groups,
            OH = (H + top + bottom - KH) // SH + 1 (likewise OW).
    Formula: y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] * x_pad[n, g*C/G + c, i*SH + u, j*SW + v]
             where g = o // (OC/G) is the group of output channel o. G=1 is the ordinary
             convolution (every output sees every input channel); G=C is depthwise (each
             channel filtered on its own: MobileNet's and Xception's spatial half).
    Backward: gb = sum of gy over (n, i, j); gW and gx are the two other products of the
    GEMM (see numpy_kernels.conv2d_backward), group by group when G > 1; gx only when x
    takes a gradient.
    Saved for backward: x and W (the kernels rebuild the im2col matrix from x).
    """

    def __init__(self, stride=1, pad=0, groups=1):
        self.stride, self.pad, self.groups = as_pair(stride), pad, groups

    def forward(self, x, W, b=None):
        c, (oc, wc, kh, kw), g = x.shape[1], W.shape, self.groups
        if c % g or oc % g:
            raise ValueError(f"conv2d: groups={g} must divide the input channels ({c}) and "
                             f"the output channels ({oc})")
        if wc * g != c:
            raise ValueError(f"conv2d: input has {c} channels, weights expect {wc * g}"
                             + (f" ({wc} per group x {g} groups)" if g > 1 else ""))
        self.pad = resolve_padding(self.pad, x.shape[2:], (kh, kw), self.stride)
        self.x, self.W = x, W
        kernels = kernels_for(x)
        if g == 1:
            y = kernels.conv2d_forward(x, W, self.stride, self.pad)  # a new array
        else:
            y = kernels.grouped_conv2d_forward(x, W, self.stride, self.pad, g)
        if b is not None:
            y += b.reshape(1, oc, 1, 1)
        return y

    def backward(self, gy):
        # The network's input (the images) needs no gradient: skip gx, half of the work.
        input_grad = self.inputs[0].requires_grad
        kernels = kernels_for(gy)
        if self.groups == 1:
            gx, gW = kernels.conv2d_backward(gy, self.x, self.W, self.stride, self.pad,
                                             input_grad)
        else:
            gx, gW = kernels.grouped_conv2d_backward(gy, self.x, self.W, self.stride, self.pad,
                                                     self.groups, input_grad)
        if len(self.inputs) == 2:  # no bias (e.g. a conv followed by batch norm)
            return gx, gW
        return gx, gW, gy.sum(axis=(0, 2, 3))


def conv2d(x, W, b=None, stride=1, pad=0, groups=1):
    """2-D convolution (cross-correlation, as in every DL library). See `Conv2d`.

    pad: an int, a pair (pad_h, pad_w), (top, bottom, left, right), "valid", or "same"
    (TensorFlow semantics: output size ceil(H / stride), odd totals padded more at the end).
    groups: split the channels into this many independent convolutions (W has C/groups
    input channels); groups = C is a depthwise convolution.
    """
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    function = Conv2d(stride, pad, groups)
    return function(x, W) if b is None else function(x, W, b)
