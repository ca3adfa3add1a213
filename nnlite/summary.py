"""How big a model is: its parameters, and the multiply-adds of one forward pass per sample.

    size = nnlite.summary.count(model, (1, 48, 48))
    size.parameters, size.multiply_adds, size.rows   # totals, and one row per layer

The multiply-adds are counted, not written down by hand: `count` runs the model once on a
zero input of the given shape (batch 1, no graph recorded) and every convolution and dense
layer reports the work its output took:

    Conv2d:  OC * OH * OW * (C / groups) * KH * KW    (one multiply-add per weight per output)
    Linear:  OUT * IN

Those are the products of a network; batch norm, ReLU, pooling and the residual additions
cost one operation or a few per activation, which the convention (the one papers and
PyTorch's profilers report as "MACs") leaves out, since for a CNN they are a few percent of
the total. So a multiply-add count says how much arithmetic a model needs, not how long it
takes: a depthwise convolution does few multiply-adds per byte it reads, and is bound by
memory traffic instead (see docs/engine.md).
"""

from dataclasses import dataclass, field

import numpy as np

from nnlite import backends
from nnlite import layers as L
from nnlite.autograd import Tensor, no_grad


@dataclass
class ModelSize:
    parameters: int
    multiply_adds: int                                   # per sample
    rows: list = field(default_factory=list)             # (layer name, output shape, multiply-adds)

    def __str__(self):
        return f"{self.parameters / 1e3:,.1f}k parameters, {self.multiply_adds / 1e6:.2f}M multiply-adds"


def _layer_macs(layer, y_shape):
    """Multiply-adds of one sample's output of `layer` (see the module docstring)."""
    if isinstance(layer, L.Conv2d):
        _, oc, oh, ow = y_shape
        _, c_per_group, kh, kw = layer.W.shape
        return oc * oh * ow * c_per_group * kh * kw
    return int(np.prod(layer.W.shape))  # Linear: OUT * IN


def count(model, sample_shape) -> ModelSize:
    """Parameters and per-sample multiply-adds of `model` on inputs of shape `sample_shape`
    (without the batch axis, e.g. (1, 48, 48)). The model runs once in eval mode."""
    rows = []
    names = {id(m): name for name, m in model._named_modules()}
    counted = [m for m in model.modules() if isinstance(m, (L.Conv2d, L.Linear))]

    def counting(layer):
        forward = layer.forward

        def wrapper(*args, **kwargs):
            y = forward(*args, **kwargs)
            rows.append((names[id(layer)].rstrip(".") or type(layer).__name__,
                         tuple(y.shape[1:]), _layer_macs(layer, y.shape)))
            return y
        return wrapper

    was_training = model.training
    model.eval()
    try:
        for layer in counted:  # an instance attribute shadows the class's forward ...
            layer.forward = counting(layer)
        x = backends.to_device(np.zeros((1, *sample_shape), np.float32),
                               model.parameters()[0].device)
        with no_grad():
            model(Tensor(x))
    finally:
        for layer in counted:  # ... and deleting it brings the class's back
            del layer.forward
        model.train(was_training)
    return ModelSize(model.num_parameters(), sum(r[2] for r in rows), rows)
