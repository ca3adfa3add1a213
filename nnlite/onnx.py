"""ONNX export: an nnlite model written out as a static ONNX graph, for other runtimes.

nnlite is define-by-run: the graph exists only while a forward pass runs, as a tape of
`Function` objects holding arrays, and it is thrown away after backward. ONNX wants the
opposite, a static graph of named nodes and named weights, saved once and run anywhere. We
do not read the tape: a tape records what one run did with its arrays (a "same" padding
already resolved, dropout already drawn, a Python `if` already decided), not which layer did
it or which array is a weight. We walk the layer list instead, in eval mode, and write one
ONNX node per layer (a few for the layers ONNX has no single op for), each layer's
parameters and buffers becoming named float32 initializers:

    Conv2d -> Conv             BatchNorm1d/2d -> BatchNormalization   ReLU -> Relu
    MaxPool2d -> MaxPool       AvgPool2d -> AveragePool (zero padding counted, as nnlite does)
    GlobalAvgPool2d -> GlobalAveragePool + Flatten                 Flatten -> Flatten
    Linear -> Gemm (W transposed by the node, not by us)         Dropout -> Identity (eval)
    LocalResponseNorm -> LRN (odd size) or Mul, Conv, Pow, Div (even size, see _lrn)
    Sequential -> its layers in order      Residual -> body, shortcut (or x) and Add

The example input is run through the model alongside, layer by layer, for the one thing a
static graph needs that a layer does not hold: the shape each layer sees, which turns a
"same" padding into numbers and gives LRN its channel count. The batch dimension stays
free ("N"): any batch size runs. Height and width are fixed to the example's, which every
model with a Linear layer needs anyway.

What this cannot export: anything that is not in the layer list. A layer with its own
`forward` (a subclass, or a model written as Python code calling nnlite.functional) may do
anything there, so it is refused with its position, never guessed at.

    from nnlite.onnx import export
    export(model, x[:1], "model.onnx", metadata={"classes": [...]}, softmax=True)

`onnx` is an optional dependency (pip install 'emotion-nnlite[onnx]'), imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnlite import backends
from nnlite import layers as L
from nnlite.autograd import Tensor, no_grad
from nnlite.functions.conv import as_pair, resolve_padding
from nnlite.serialization import write_atomically

DEFAULT_OPSET = 17  # onnx >= 1.12 and every onnxruntime since 1.11 run it
MIN_OPSET = 13      # Softmax over one axis (older opsets flatten), Gemm without C
INSTALL_HINT = "pip install 'emotion-nnlite[onnx]'"


class ExportError(Exception):
    """The model cannot be exported as it is (an unsupported layer, a bad argument, no onnx);
    the message says which and what to do."""


def export(module, example_input, path, *, metadata=None, opset=DEFAULT_OPSET,
           softmax=False, input_name="input") -> Path:
    """Write `module` as an ONNX model to `path` (atomically) and return the path.

    module:        a Sequential (or any layer) of the nnlite layers listed in this module's
                   docstring, possibly nested (Residual blocks); float32 parameters.
    example_input: one input batch (N, ...), e.g. (1, 1, 48, 48); only its shape after the
                   batch axis is used (the exported batch size is free).
    metadata:      {key: value} stored in the model's metadata_props; a value that is not a
                   string is stored as JSON.
    softmax:       append a Softmax over axis 1: the output is then "probabilities" instead
                   of the module's own "output" (e.g. logits).
    The model is checked by onnx.checker (with shape inference) before it is written.
    """
    onnx = _require_onnx()
    from onnx import helper

    if not isinstance(opset, int) or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ExportError(f"opset must be an int from {MIN_OPSET} to "
                          f"{onnx.defs.onnx_opset_version()} (this onnx's newest), got {opset!r}")
    if not isinstance(module, L.Module):
        raise ExportError(f"export takes an nnlite Module (e.g. a Sequential), got "
                          f"{type(module).__name__}")
    x = _example_array(example_input)
    _check_float32(module)

    graph = _Graph()
    modes = [(m, m.training) for m in module.modules()]
    module.eval()  # dropout off, batch norm on its running statistics: what inference runs
    try:
        with no_grad():
            out_name, out = _convert(graph, module, (input_name, Tensor(x)), where="")
    finally:
        for m, mode in modes:
            m.training = mode
    if softmax:
        out_name = graph.node("Softmax", [out_name], "softmax", axis=1)
    out_shape = tuple(out.shape)

    final = "probabilities" if softmax else "output"
    if graph.nodes and graph.nodes[-1].output[0] == out_name:
        graph.nodes[-1].output[0] = final  # the last node writes the model's output
    else:  # a module that is the identity (e.g. an empty Sequential)
        graph.node("Identity", [out_name], "output", outputs=[final])
    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "nnlite",
            [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT,
                                           ["N", *x.shape[1:]])],
            [helper.make_tensor_value_info(final, onnx.TensorProto.FLOAT,
                                           ["N", *out_shape[1:]])],
            initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="nnlite",
        producer_version=_nnlite_version(),
    )
    # The oldest IR version that holds this opset, not this onnx's newest: older runtimes
    # refuse a file whose IR version they do not know.
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), value if isinstance(value, str) else json.dumps(value)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported graph does not pass onnx.checker: "
                          f"{str(err).splitlines()[0]}") from None
    return write_atomically(Path(path), model.SerializeToString())


# -- the graph being built ----------------------------------------------------------------------
class _Graph:
    """Nodes and initializers, in the order they are made; names are made unique here."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def node(self, op, inputs, name, outputs=None, **attributes) -> str:
        """Add one node; returns the name of its (first) output."""
        from onnx import helper

        self._count += 1
        label = f"{name}/{op}#{self._count}"
        outputs = outputs or [label]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=label, **attributes))
        return outputs[0]

    def weight(self, name, array) -> str:
        """A float32 initializer named `name` (the state-dict name: "3.W", "5.body.0.W")."""
        from onnx import numpy_helper

        array = np.ascontiguousarray(backends.to_numpy(array), dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


# -- one converter per layer kind -----------------------------------------------------------------
# Each takes the graph, the layer, its input as (ONNX name, nnlite Tensor) and the layer's
# position, and returns its output the same way. The Tensor is the example input carried
# along, so the converter can read the shape it sees.

def _conv2d(graph, layer, x, where):
    name, value = x
    W = layer.W.data
    kernel, stride = tuple(W.shape[2:]), as_pair(layer.stride)
    top, bottom, left, right = resolve_padding(layer.pad, value.shape[2:], kernel, stride)
    inputs = [name, graph.weight(where + "W", W)]
    if layer.b is not None:
        inputs.append(graph.weight(where + "b", layer.b.data))
    out = graph.node("Conv", inputs, where + "conv", kernel_shape=list(kernel),
                     strides=list(stride), pads=[top, left, bottom, right],  # ONNX: begins, ends
                     group=layer.groups, dilations=[1, 1])
    return out, layer(value)


def _linear(graph, layer, x, where):
    name, value = x
    if value.ndim != 2:
        raise ExportError(f"layer {where[:-1] or '(top)'} (Linear) gets a {value.ndim}-D input "
                          f"{tuple(value.shape)}: put a Flatten before it")
    inputs = [name, graph.weight(where + "W", layer.W.data)]
    if layer.b is not None:
        inputs.append(graph.weight(where + "b", layer.b.data))
    # nnlite keeps PyTorch's W (OUT, IN): y = x @ W.T, which is Gemm with transB=1
    return graph.node("Gemm", inputs, where + "linear", transB=1), layer(value)


def _batch_norm(graph, layer, x, where):
    name, value = x
    inputs = [name, graph.weight(where + "gamma", layer.gamma.data),
              graph.weight(where + "beta", layer.beta.data),
              graph.weight(where + "running_mean", layer._buffers["running_mean"]),
              graph.weight(where + "running_var", layer._buffers["running_var"])]
    # ONNX's inference formula is nnlite's eval formula: gamma * (x - mean) / sqrt(var + eps) + beta
    out = graph.node("BatchNormalization", inputs, where + "batch_norm", epsilon=layer.eps)
    return out, layer(value)


def _relu(graph, layer, x, where):
    return graph.node("Relu", [x[0]], where + "relu"), layer(x[1])


def _pool(op, **attributes):
    def convert(graph, layer, x, where):
        name, value = x
        kernel = as_pair(layer.kernel_size)
        stride = as_pair(layer.stride if layer.stride is not None else layer.kernel_size)
        top, bottom, left, right = resolve_padding(layer.pad, value.shape[2:], kernel, stride)
        out = graph.node(op, [name], where + op, kernel_shape=list(kernel),
                         strides=list(stride), pads=[top, left, bottom, right], **attributes)
        return out, layer(value)
    return convert


# Max pooling's padding never wins (nnlite pads with -inf, ONNX ignores it); average pooling
# counts the zero padding in the mean in nnlite, which is ONNX's count_include_pad=1.
_max_pool = _pool("MaxPool")
_avg_pool = _pool("AveragePool", count_include_pad=1)


def _global_avg_pool(graph, layer, x, where):
    pooled = graph.node("GlobalAveragePool", [x[0]], where + "global_avg_pool")
    # ONNX keeps (N, C, 1, 1); nnlite's layer returns (N, C)
    return graph.node("Flatten", [pooled], where + "global_avg_pool", axis=1), layer(x[1])


def _flatten(graph, layer, x, where):
    return graph.node("Flatten", [x[0]], where + "flatten", axis=1), layer(x[1])


def _dropout(graph, layer, x, where):
    # Eval-mode dropout is the identity; the node keeps the graph one-to-one with the layers.
    return graph.node("Identity", [x[0]], where + "dropout"), layer(x[1])


def _lrn(graph, layer, x, where):
    """nnlite's LRN (PyTorch's) and ONNX's LRN both write

        y[c] = x[c] / (k + alpha / size * sum of x[c']^2 over a window of `size` channels) ** beta

    so alpha, beta and k carry over unchanged (TFLearn's convention, which does not divide
    alpha by size, is converted once in nnlite's layer, not here). The windows agree only for
    an odd size: c - size//2 .. c + size//2. For an even size PyTorch puts the extra channel
    before c (c - size/2 .. c + size/2 - 1) and ONNX after it (and onnxruntime refuses an even
    size outright), so then the formula is written out: the window sum of x^2 as a 1x1
    convolution with a 0/1 band matrix."""
    name, value = x
    size, alpha, beta, k = layer.size, float(layer.alpha), float(layer.beta), float(layer.k)
    if size % 2:
        out = graph.node("LRN", [name], where + "lrn", size=size, alpha=alpha, beta=beta,
                         bias=k)
        return out, layer(value)
    channels = value.shape[1]
    c = np.arange(channels)  # band[o, i] = 1 when input channel i is in o's window
    band = ((c[None, :] >= c[:, None] - size // 2)
            & (c[None, :] <= c[:, None] + (size - 1) // 2)).astype(np.float32)
    squares = graph.node("Mul", [name, name], where + "lrn")
    window = graph.node("Conv", [squares, graph.weight(where + "lrn_window",
                                                       band[:, :, None, None])],
                        where + "lrn", kernel_shape=[1, 1])
    constant = {key: graph.weight(where + "lrn_" + key, np.array(number, np.float32))
                for key, number in (("alpha", alpha / size), ("k", k), ("beta", beta))}
    scaled = graph.node("Mul", [window, constant["alpha"]], where + "lrn")
    base = graph.node("Add", [scaled, constant["k"]], where + "lrn")
    denominator = graph.node("Pow", [base, constant["beta"]], where + "lrn")
    return graph.node("Div", [name, denominator], where + "lrn"), layer(value)


def _sequential(graph, layer, x, where):
    # Layer by layer, without Sequential's batch norm + ReLU fusion: the same values
    for i, child in enumerate(layer.layers):
        x = _convert(graph, child, x, f"{where}{i}")
    return x


def _residual(graph, layer, x, where):
    body_name, body = _convert(graph, layer.body, x, where + "body")
    if layer.shortcut is None:
        short_name, short = x
    else:
        short_name, short = _convert(graph, layer.shortcut, x, where + "shortcut")
    return graph.node("Add", [body_name, short_name], where + "add"), body + short


# Keyed by the forward a layer runs, not by its class: a subclass that keeps the forward
# computes the same thing and exports; one with its own forward may compute anything.
CONVERTERS = {
    L.Conv2d.forward: _conv2d,
    L.Linear.forward: _linear,
    L.BatchNorm.forward: _batch_norm,
    L.ReLU.forward: _relu,
    L.MaxPool2d.forward: _max_pool,
    L.AvgPool2d.forward: _avg_pool,
    L.GlobalAvgPool2d.forward: _global_avg_pool,
    L.Flatten.forward: _flatten,
    L.Dropout.forward: _dropout,
    L.LocalResponseNorm.forward: _lrn,
    L.Sequential.forward: _sequential,
    L.Residual.forward: _residual,
}
SUPPORTED = ("Conv2d, Linear, BatchNorm1d/2d, ReLU, MaxPool2d, AvgPool2d, GlobalAvgPool2d, "
             "Flatten, Dropout, LocalResponseNorm, Sequential, Residual")


def _convert(graph, layer, x, where):
    """Export one layer at position `where` ("" for the top, "3", "5.body.2")."""
    converter = CONVERTERS.get(getattr(type(layer), "forward", None))
    position = where or "(the top module)"
    if converter is None:
        why = ("it has its own forward(), which the exporter cannot read"
               if isinstance(layer, L.Module) else "it is not an nnlite layer")
        raise ExportError(f"cannot export layer {position} ({type(layer).__name__}): {why}; "
                          f"ONNX export supports {SUPPORTED}")
    return converter(graph, layer, x, where + "." if where else "")


# -- checks and the file --------------------------------------------------------------------------
def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def _example_array(example_input):
    data = example_input.data if isinstance(example_input, Tensor) else example_input
    if not backends.is_array(data):
        data = np.asarray(data)
    if data.ndim < 2 or data.shape[0] < 1:
        raise ExportError(f"example_input must be a batch (N, ...) with N >= 1, got shape "
                          f"{tuple(data.shape)}")
    if data.dtype != np.float32:
        raise ExportError(f"example_input must be float32, got {data.dtype}")
    return data


def _check_float32(module):
    for name, array in module.state_dict().items():
        if array.dtype != np.float32:
            raise ExportError(f"{name} is {array.dtype}: ONNX export writes float32 models; "
                              "call module.astype(numpy.float32) first")


def _nnlite_version():
    import nnlite

    return nnlite.__version__
