"""Every differentiable op, as functions: `import nnlite.functional as F`.

Each op is a `Function` (forward and backward side by side) in `nnlite/functions/`:
    basic.py          + - * / ** @, sum, mean, reshape, transpose, indexing, exp, log
    conv.py           conv2d (im2col + GEMM)
    pool.py           max_pool2d, avg_pool2d, global_avg_pool2d
    linear.py         linear
    activation.py     relu, softmax, log_softmax, dropout, flatten
    normalization.py  batch_norm, local_response_norm
    loss.py           softmax_cross_entropy, soft_target_cross_entropy (distillation),
                      binary_cross_entropy_with_logits, accuracy
    regression.py     wing_loss (landmark regression, masked per sample)
"""

from nnlite.functions.activation import dropout, flatten, log_softmax, relu, softmax
from nnlite.functions.basic import (
    add, div, exp, getitem, log, matmul, mean, mul, neg, reshape, sub, sum, transpose,
)
from nnlite.functions.conv import conv2d, same_padding
from nnlite.functions.linear import linear
from nnlite.functions.loss import (
    accuracy, binary_cross_entropy_with_logits, soft_target_cross_entropy, softmax_cross_entropy,
)
from nnlite.functions.normalization import batch_norm, local_response_norm
from nnlite.functions.pool import avg_pool2d, global_avg_pool2d, max_pool2d
from nnlite.functions.regression import wing_loss

__all__ = [
    "add", "sub", "mul", "div", "neg", "exp", "log", "matmul", "sum", "mean", "reshape",
    "transpose", "getitem", "conv2d", "same_padding", "max_pool2d", "avg_pool2d",
    "global_avg_pool2d", "linear", "relu", "softmax", "log_softmax", "dropout", "flatten",
    "batch_norm", "local_response_norm", "softmax_cross_entropy", "soft_target_cross_entropy",
    "binary_cross_entropy_with_logits", "accuracy", "wing_loss",
]
