"""A depthwise-separable convolution as one kernel: the depthwise KHxKW convolution (groups =
channels, no bias) and the 1x1 convolution right after it (Xception's SeparableConv2D, the
mobile net's building block), for inference.

Run as two ops, the pair writes the depthwise result for the whole batch to memory and reads
it back, through two op calls. Here, one image at a time:

    1. depthwise.py's kernel writes the image's depthwise result into `scratch` (C', OH*OW),
       a buffer the caller keeps: at most 221 KB for the mobile net (24 x 48 x 48), so it is
       still in the core's cache when
    2. one GEMM, W_pointwise (OC, C') @ scratch, writes the image's output straight into y,
    3. and the bias (a folded batch norm's) and the ReLU after it are added in y in place.

Why BLAS for the 1x1 step and not a Numba loop over the scratch: the pointwise layers are
~80% of the mobile net's multiply-adds, and a register-blocked Numba loop (4 output channels
a pass) ran them 2.6-3.6x slower than single-threaded OpenBLAS at every block's shape
(2026-12-07, 2-vCPU AMD EPYC, loaded: (24, 16) x 2304 pixels 55 vs 21 us, (256, 256) x 36
pixels 189 vs 60 us).
"""

import numpy as np

from nnlite.backends.numba import depthwise
from nnlite.backends.numba.inference import bias_relu


def separable_forward(x, W_depthwise, W_pointwise, b, stride, pad, relu, scratch, y):
    """y = relu(conv1x1(depthwise(x), W_pointwise) + b), the ReLU only if relu.

    Shapes: x (N, C, H, W), W_depthwise (C', 1, KH, KW) with C' = M*C (M filters a channel),
    W_pointwise (OC, C', 1, 1), b (OC,) or None, y (N, OC, OH, OW), scratch (C', OH*OW).
    stride and pad are the depthwise layer's ((SH, SW), (top, bottom, left, right)); the 1x1
    layer has stride 1 and no padding. Equal to the two convolutions up to float32 rounding
    (the same kernels, the sum in the GEMM's order)."""
    n, oc, oh, ow = y.shape
    depthwise_out = scratch.reshape(1, W_depthwise.shape[0], oh, ow)
    W2 = W_pointwise.reshape(oc, -1)
    for i in range(n):
        depthwise.depthwise_forward(x[i:i + 1], W_depthwise, stride, pad, depthwise_out)
        np.matmul(W2, scratch, out=y[i].reshape(oc, oh * ow))
        bias_relu(y[i:i + 1], b, relu)  # while the image's output is in the cache
