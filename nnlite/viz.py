"""Looking inside a network: its computation graph, its activations and its gradients.

    to_dot(loss)                       the graph of a forward pass as Graphviz "dot" text
    layer_outputs(model, x)            every layer's output of a Sequential, in order
    saliency_and_grad_cam(model, x, c, split)
                                       |d score_c / d input| and Grad-CAM at layer `split`

Nothing here is new maths: the graph is the one autograd records (`Tensor.creator` ->
`Function.inputs`), and both maps are ordinary `backward()` calls. Graphviz is not needed
to make the text; render it elsewhere with `dot -Tpng graph.dot -o graph.png`.
"""

import numpy as np

from nnlite import backends
from nnlite.autograd import Tensor, no_grad
from nnlite.layers import Parameter

# Settings of an op worth printing in its graph node (scalars and tuples only, never arrays).
_OP_SETTINGS = ("kernel", "stride", "pad", "p", "size", "axis", "train", "relu")


def to_dot(output: Tensor, params=None, name: str = "forward") -> str:
    """The computation graph that produced `output`, as Graphviz dot text.

    One box per Function (labelled with its op name, e.g. Conv2d, ReLU, MaxPool2d, BatchNorm,
    Linear, SoftmaxCrossEntropy, plus settings such as stride and pad) and one oval per Tensor
    (labelled with its shape). Parameters are drawn as filled boxes, named when `params`
    (e.g. `dict(model.named_parameters())`) says what they are called. Edges follow the data:
    tensor -> op -> tensor.

    Call it BEFORE `backward()`: backward frees what each function saved, its links to its
    inputs included (`Function.release`), so after it there is no graph left to draw.
    """
    names = {id(t): n for n, t in (params or {}).items()}
    nodes = {}  # id(object) -> (label, attributes), in the order the walk meets them
    edges = []  # (id(from), id(to))

    def node(obj, label, **attrs):
        nodes.setdefault(id(obj), (label, attrs))
        return id(obj)

    def tensor_node(t, role=None):
        shape = str(tuple(int(s) for s in t.shape))
        if isinstance(t, Parameter) or id(t) in names:
            label = f"{names.get(id(t), t.name or 'parameter')}\n{shape}"
            return node(t, label, shape="box", style="filled", fillcolor="lightgoldenrod")
        if t.creator is None:  # a leaf that is not a parameter: the data fed in
            return node(t, f"input\n{shape} {t.dtype}", shape="oval", style="filled",
                        fillcolor="lightblue")
        label = f"{role}\n{shape} {t.dtype}" if role else f"{shape} {t.dtype}"
        return node(t, label, shape="oval", **({"peripheries": 2} if role else {}))

    tensor_node(output, role="output")
    stack = [output.creator] if output.creator is not None else []
    seen = set()
    while stack:  # iterative: a deep network must not hit Python's recursion limit
        function = stack.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        if getattr(function, "released", False):
            raise RuntimeError("to_dot: this graph was freed by backward(); call to_dot after "
                               "the forward pass and before backward()")
        f = node(function, _op_label(function), shape="box", style="rounded,filled",
                 fillcolor="palegreen")
        edges.extend((f, tensor_node(out)) for out in function.outputs)
        for t in function.inputs:
            edges.append((tensor_node(t), f))
            if t.creator is not None:
                stack.append(t.creator)

    # The walk starts at the output; numbering in reverse puts the inputs first, as one reads.
    order = {key: f"n{i}" for i, key in enumerate(reversed(list(nodes)))}
    lines = [f"digraph {_quote(name)} {{", '  node [fontname="Helvetica", fontsize=10];']
    for key in order:
        label, attrs = nodes[key]
        attrs = "".join(f", {k}={_quote(v)}" for k, v in attrs.items())
        lines.append(f"  {order[key]} [label={_quote(label)}{attrs}];")
    lines += [f"  {order[a]} -> {order[b]};" for a, b in reversed(edges)]
    return "\n".join(lines + ["}"]) + "\n"


def _op_label(function) -> str:
    settings = [f"{k} {v}" for k, v in vars(function).items()
                if k in _OP_SETTINGS and isinstance(v, (int, float, str, bool, tuple))
                and not isinstance(v, np.ndarray)]
    return "\n".join([type(function).__name__] + settings)


def _quote(text) -> str:
    """A dot string literal: quotes and backslashes escaped, newlines as dot's \\n."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


# -- activations and gradients of a Sequential -------------------------------------------------
def layer_outputs(model, x) -> list:
    """The output Tensor of every layer of a Sequential model, in order (no graph recorded)."""
    outputs = []
    with no_grad():
        for layer in model.layers:
            x = layer(x)
            outputs.append(x)
    return outputs


def saliency_and_grad_cam(model, x, class_index: int, split: int):
    """Why did `model` score class `class_index` as it did for the single image x (1, C, H, W)?

    Returns (logits (1, K), saliency (H, W), grad_cam (h, w), activations), NumPy arrays:

    saliency   |d score / d x|, max over input channels (Simonyan et al. 2013): the pixels
               whose small change would move the score most.
    grad_cam   ReLU(sum_k a_k * A_k) where A = the output of layers[:split + 1] (the last
               conv block), a_k = mean over space of d score / d A_k (Selvaraju et al. 2017):
               where, at the resolution of that layer, the evidence for the class lies.
    activations  the (1, C, h, w) array A itself.

    Only leaves keep `.grad` in nnlite, so A is made a leaf: the model runs in two halves and
    the second half starts from a fresh Tensor(A, requires_grad=True). Backward through the
    second half fills A_leaf.grad; passing that gradient on with `A.backward(A_leaf.grad)` is
    the chain rule done by hand, and it fills x.grad exactly as one unsplit backward would.
    The model should be in eval mode (no dropout, batch-norm running statistics).
    """
    if x.shape[0] != 1:
        raise ValueError(f"explain one image at a time: x has shape {x.shape}")
    x = Tensor(x.data if isinstance(x, Tensor) else x, requires_grad=True)
    a = x
    for layer in model.layers[: split + 1]:
        a = layer(a)
    a_leaf = Tensor(a.data, requires_grad=True)
    logits = a_leaf
    for layer in model.layers[split + 1 :]:
        logits = layer(logits)
    logits_data = logits.data.copy()
    logits[0, class_index].backward()  # d score / d A, into a_leaf.grad
    grad_a = a_leaf.grad
    a.backward(grad_a)  # ... and on through the first half: d score / d x, into x.grad

    xp = backends.get_array_module(grad_a)
    weights = grad_a.mean(axis=(2, 3), keepdims=True)  # (1, C, 1, 1): one weight per channel
    cam = xp.maximum((weights * a.data).sum(axis=1)[0], 0)
    saliency = xp.abs(x.grad[0]).max(axis=0)
    model.zero_grad()  # the parameters got gradients too; leave the model as we found it
    to_np = backends.to_numpy
    return to_np(logits_data), to_np(saliency), to_np(cam), to_np(a.data)
