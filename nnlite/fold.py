"""Folding batch norm into the layer before it: the same predictions with fewer ops.

In eval mode a batch norm no longer looks at its batch: it is a fixed affine map per
channel,

    BN(z) = gamma * (z - mean) / sqrt(var + eps) + beta  =  s * z + t,
    s = gamma / sqrt(var + eps),   t = beta - s * mean,

and when z is a convolution (or a dense layer), z = W * x + b, the two compose into one
layer of the same kind:

    s * (W * x + b) + t  =  (s W) * x + (s b + t),

each output channel's filter scaled by its s and the bias moved. So a trained network runs
with every batch norm that directly follows a Conv2d or Linear removed and those layers'
weights rewritten: one pass less over each activation map, and one op call less per layer
(which at batch 1, the live demo, costs as much as the arithmetic). ONNX Runtime, TFLite and
TensorRT do the same before they run a model.

The result is for inference only: a folded network trained on would not be batch-normalized
any more. The folded values differ from the unfolded ones by float32 rounding (tested).
"""

from __future__ import annotations

import copy

from nnlite import backends
from nnlite import layers as L


def fold_batch_norm(model: L.Module) -> L.Module:
    """An eval-mode copy of `model` with each batch norm that directly follows a Conv2d or
    Linear (in a Sequential) folded into it; everything else, `model` included, unchanged."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, L.Sequential):
            module.layers = _fold_layers(module.layers)
    return folded


def foldable(layer, following) -> bool:
    """A Conv2d or Linear directly followed by a plain batch norm (L.is_plain_batch_norm)."""
    return type(layer) in (L.Conv2d, L.Linear) and L.is_plain_batch_norm(following)


def _fold_layers(layers: list) -> list:
    out = []
    for layer in layers:
        if out and foldable(out[-1], layer):
            _fold_into(out[-1], layer)
        else:
            out.append(layer)
    return out


def _fold_into(layer, norm) -> None:
    """Rewrite `layer` (Conv2d W (OC, C, KH, KW) or Linear W (OUT, IN)) as itself followed by
    `norm`: W <- s W per output channel, b <- s b + t (b = 0 for a layer without bias)."""
    W = layer.W.data
    xp = backends.get_array_module(W)
    mean, var = norm._buffers["running_mean"], norm._buffers["running_var"]
    s = norm.gamma.data / xp.sqrt(var + norm.eps)
    b = layer.b.data if layer.b is not None else xp.zeros_like(s)
    layer.W = L.Parameter((W * s.reshape((-1,) + (1,) * (W.ndim - 1))).astype(W.dtype))
    layer.b = L.Parameter((s * (b - mean) + norm.beta.data).astype(W.dtype))
