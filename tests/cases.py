"""The cases of the backend suite (tests/test_backends.py), in one place.

Each list is the cases every backend runs; `tiny_under_simulator(tiny, larger)` drops the
larger ones under Numba's CUDA simulator, which runs each GPU thread in Python (tests/conftest.py
shrinks its launches to 3 blocks of 32 threads, so on the tiny cases every grid-stride loop
still goes round several times).
"""

import numpy as np

from nnlite.gradcheck import _distinct
from tests.conftest import tiny_under_simulator

# Windows of convolution and pooling: (x shape, kh, kw, stride, pad (top, bottom, left, right)).
WINDOWS = [
    ((2, 3, 7, 9), 3, 3, (1, 1), (1, 1, 1, 1)),
    ((3, 2, 8, 8), 4, 4, (1, 1), (1, 2, 1, 2)),       # 'same' for an even kernel
    ((2, 4, 9, 7), 3, 3, (2, 2), (0, 1, 1, 1)),       # 'same' k3 s2 on odd sizes
    ((1, 3, 6, 5), 3, 2, (2, 1), (1, 1, 0, 0)),
    ((2, 1, 5, 5), 5, 5, (1, 1), (2, 2, 2, 2)),
    ((2, 2, 6, 6), 2, 2, (2, 2), (0, 0, 0, 0)),
    ((2, 3, 7, 5), 2, 2, (2, 2), (0, 0, 0, 0)),       # 2x2 s2 on odd sizes: the last row/column unused
    ((1, 2, 7, 6), 4, 4, (2, 2), (1, 2, 1, 1)),       # stride 2, 'same' pad with the extra at the end
    ((2, 1, 6, 5), 3, 2, (2, 1), (1, 1, 0, 0)),       # different strides and kernel sides
    ((2, 2, 7, 8), 3, 3, (2, 2), (1, 1, 0, 1)),       # kernel 3 stride 2, TensorFlow 'same' pads
    ((1, 2, 5, 5), 3, 3, (2, 2), (0, 0, 0, 0)),       # odd size, last row/column dropped
    ((1, 1, 6, 6), 3, 3, (1, 1), (1, 1, 1, 1)),       # overlapping windows: a pixel wins several
]

CONV_WINDOWS = WINDOWS + tiny_under_simulator([
    ((1, 3, 9, 6), 3, 3, (1, 1), (1, 1, 1, 1)),    # batch 1: the Numba forward splits the rows
    ((5, 2, 4, 4), 3, 3, (1, 1), (3, 0, 0, 2)),    # more images than threads, odd pads
    ((3, 2, 5, 5), 1, 1, (1, 1), (1, 1, 1, 1)),    # 1x1 kernel with padding
], [
    ((4, 16, 13, 12), 3, 3, (1, 1), (1, 1, 1, 1)),  # Numba: Winograd F(2x2, 3x3), odd height
])

# Grouped convolution, 3x3 filters: (x shape, output channels, groups, stride, pad);
# groups == C is depthwise.
GROUPED = [
    ((1, 3, 5, 6), 3, 3, (1, 1), (1, 1, 1, 1)),   # depthwise, 'same'
    ((1, 3, 6, 5), 6, 3, (2, 2), (1, 1, 1, 1)),   # depthwise, two filters a channel, stride 2
    ((1, 2, 7, 6), 2, 2, (2, 1), (0, 1, 2, 0)),   # depthwise, uneven stride and padding
    ((2, 4, 5, 5), 6, 2, (1, 1), (1, 1, 1, 1)),   # two groups: the dense kernels per group
]

# LRN: (x shape, size, alpha, beta, bias)
LRN = tiny_under_simulator([
    ((2, 7, 3, 3), 5, 0.1, 0.75, 2.0),
    ((2, 13, 2, 5), 11, 1.1e-1, 0.75, 1.0),   # TFLearn's defaults, scaled up to matter
    ((2, 13, 2, 3), 11, 1.1e-1, 0.75, 1.0),
    ((1, 5, 4, 3), 2, 0.2, 0.6, 1.5),         # even size: an asymmetric window
    ((1, 6, 2, 2), 4, 0.5, 0.6, 1.5),
], [
    ((3, 3, 33, 33), 7, 0.3, 0.75, 1.0),      # window wider than the channels; many pixels
])

# Batch norm: x shapes. (2, 5, 3, 3): more channels than the simulator's 3 blocks, so blocks
# stride over channels; (7, 3, 5, 3): a channel of 105 values, not a multiple of a block.
BATCH_NORM = tiny_under_simulator(
    [(3, 2, 2, 3), (2, 5, 3, 3), (7, 4), (7, 3, 5, 3)],
    [(4, 3, 5, 6), (7, 5), (64, 8, 9, 9)],
)
BATCH_NORM_RELU = tiny_under_simulator([(7, 3, 5, 3)], [(64, 8, 9, 9)])

RELU = tiny_under_simulator([(3, 4, 5, 6)], [(64, 32, 33, 33)])  # the second runs in parallel

# Gradient checks under the simulator: a check runs the forward twice per input element, so
# the ops with custom CUDA kernels get smaller inputs (same function, same kinds of geometry;
# by nnlite.gradcheck.op_cases() name). The layer_* cases are compositions of the ops checked
# one by one, too slow to simulate: they run on every other backend, a real GPU included.
SIMULATOR_GRADCHECK_INPUTS = {
    "conv2d": lambda r: [r.standard_normal((1, 2, 4, 3)), r.standard_normal((2, 2, 3, 3)),
                         r.standard_normal(2)],
    "conv2d_stride2_same": lambda r: [r.standard_normal((1, 2, 4, 3)),
                                      r.standard_normal((2, 2, 3, 2))],
    "conv2d_pad_pair": lambda r: [r.standard_normal((1, 1, 4, 3)), r.standard_normal((2, 1, 3, 2)),
                                  r.standard_normal(2)],
    "conv2d_groups2": lambda r: [r.standard_normal((1, 4, 3, 3)), r.standard_normal((4, 2, 3, 3)),
                                 r.standard_normal(4)],
    "conv2d_depthwise_stride2": lambda r: [r.standard_normal((1, 3, 4, 3)),
                                           r.standard_normal((6, 1, 3, 3))],
    "max_pool2d": lambda r: [_distinct(r, (1, 2, 4, 4))],
    "max_pool2d_k3s2_same": lambda r: [_distinct(r, (1, 2, 5, 4))],
    "avg_pool2d": lambda r: [r.standard_normal((1, 1, 4, 5))],
    "local_response_norm": lambda r: [r.standard_normal((1, 6, 1, 2)) * 2],
    "local_response_norm_tflearn": lambda r: [r.standard_normal((1, 13, 1, 1)) * 2],
    "batch_norm_train_4d": lambda r: [r.standard_normal((2, 2, 1, 2)), r.uniform(0.5, 1.5, 2),
                                      r.standard_normal(2)],
    "batch_norm_train_2d": lambda r: [r.standard_normal((3, 2)), r.uniform(0.5, 1.5, 2),
                                      r.standard_normal(2)],
    "batch_norm_relu_train_4d": lambda r: [r.standard_normal((3, 2, 1, 2)),
                                           r.uniform(0.5, 1.5, 2), r.standard_normal(2)],
    "batch_norm_relu_eval": lambda r: [r.standard_normal((1, 2, 1, 2)), r.uniform(0.5, 1.5, 2),
                                       r.standard_normal(2)],
    "batch_norm_relu_eval_2d": lambda r: [r.standard_normal((3, 2)), r.uniform(0.5, 1.5, 2),
                                          r.standard_normal(2)],
    "batch_norm_eval": lambda r: [r.standard_normal((1, 2, 1, 2)), r.uniform(0.5, 1.5, 2),
                                  r.standard_normal(2)],
    "softmax_cross_entropy": lambda r: [r.standard_normal((3, 7)), r.integers(0, 7, 3)],
    "softmax_cross_entropy_weighted_smoothed": lambda r: [r.standard_normal((3, 7)),
                                                          np.array([0, 3, 6])],
}
