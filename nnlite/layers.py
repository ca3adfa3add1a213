"""Layers: modules that own parameters and call the ops in `nnlite.functional`.

A `Module` finds its parameters (tensors that require gradients) and sub-modules by looking
at its own attributes, so a layer is written as plainly as:

    class Linear(Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.W = Parameter(...)
            self.b = Parameter(...)
        def forward(self, x):
            return F.linear(x, self.W, self.b)

Buffers (arrays that are saved and moved with the module but not trained, such as batch
norm's running statistics) are declared with `register_buffer(name, array)`.
"""

import math
from collections import OrderedDict

import numpy as np

from nnlite import backends
from nnlite import functional as F
from nnlite import random as nnrandom
from nnlite.autograd import Tensor


class Parameter(Tensor):
    """A tensor a module learns: requires_grad is always on."""

    def __init__(self, data, name=None):
        super().__init__(data, requires_grad=True, name=name)


class Module:
    """Base class: parameters(), named_parameters(), train()/eval(), state_dict(), to()."""

    def __init__(self):
        self.training = True
        self._buffers = OrderedDict()

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args):
        raise NotImplementedError

    # -- discovery ---------------------------------------------------------------------------
    def _children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(
                isinstance(v, Module) for v in value
            ):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self._children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name, array):
        """An array saved with the weights but not learned (e.g. batch-norm running mean)."""
        self._buffers[name] = array

    def named_buffers(self, prefix=""):
        for name, array in self._buffers.items():
            yield prefix + name, array
        for name, child in self._children():
            yield from child.named_buffers(prefix + name + ".")

    def modules(self):
        yield self
        for _, child in self._children():
            yield from child.modules()

    # -- modes and devices -------------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to "cpu" or "cuda" (in place); returns self."""
        for p in self.parameters():
            p.data = backends.to_device(p.data, device)
            p.grad = None
        for module in self.modules():
            for name, array in module._buffers.items():
                module._buffers[name] = backends.to_device(array, device)
        return self

    def astype(self, dtype):
        """Cast every parameter and buffer (in place), e.g. to float64 for a gradient check."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for module in self.modules():
            for name, array in module._buffers.items():
                module._buffers[name] = array.astype(dtype)
        return self

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # -- weights -----------------------------------------------------------------------------
    def state_dict(self):
        """name -> array, for every parameter and buffer, in a stable order."""
        state = OrderedDict((name, p.data) for name, p in self.named_parameters())
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state, source="state_dict"):
        """Copy arrays into this module. Names and shapes must match exactly; the error names
        the first parameter that does not (and `source`, e.g. the weight file)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"{source} does not match the model: missing {missing or 'none'}, "
                f"unexpected {unexpected or 'none'}"
            )
        for name, array in own.items():
            if tuple(state[name].shape) != tuple(array.shape):
                raise ValueError(
                    f"{source}: parameter {name!r} has shape {tuple(state[name].shape)} in the "
                    f"file but {tuple(array.shape)} in the model"
                )
        for name, p in self.named_parameters():
            value = backends.to_numpy(state[name]).astype(p.dtype)  # e.g. float16 file -> float32
            p.data = backends.to_device(value, p.device)
            p.grad = None
        for module_name, module in self._named_modules():
            for name, array in module._buffers.items():
                value = backends.to_numpy(state[module_name + name]).astype(array.dtype)
                module._buffers[name] = backends.to_device(value, backends.device_of(array))
        return self

    def _named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._children():
            yield from child._named_modules(prefix + name + ".")

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._children():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")

    def extra_repr(self):
        return ""


# -- initialisation ---------------------------------------------------------------------------
def he_normal(shape, fan_in):
    """He et al. 2015: std = sqrt(2 / fan_in) keeps the activation variance through ReLUs."""
    return nnrandom.normal(shape, math.sqrt(2.0 / fan_in))


def glorot_uniform(shape, fan_in, fan_out):
    """Glorot & Bengio 2010: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), for linear outputs."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return nnrandom.host_rng().uniform(-limit, limit, size=shape).astype(np.float32)


def _init(shape, fan_in, fan_out, init):
    if init == "he":
        return he_normal(shape, fan_in)
    if init == "glorot":
        return glorot_uniform(shape, fan_in, fan_out)
    raise ValueError(f"unknown init {init!r}; use 'he' or 'glorot'")


def _on_default_device(array):
    return backends.to_device(array, backends.default_device())


# -- layers ---------------------------------------------------------------------------------
class Conv2d(Module):
    """A convolution layer. W (OC, C/groups, KH, KW), He-initialised; b zeros.

    groups > 1 splits the channels into independent convolutions (groups=C: depthwise). Each
    output then sums C/groups*KH*KW products, which is the fan-in of its initialisation.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0, bias=True,
                 init="he", groups=1):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        c = in_channels // groups
        fan_in, fan_out = c * kh * kw, out_channels // groups * kh * kw
        self.W = Parameter(_on_default_device(_init((out_channels, c, kh, kw),
                                                    fan_in, fan_out, init)))
        self.b = Parameter(_on_default_device(np.zeros(out_channels, np.float32))) if bias else None
        self.stride, self.pad, self.groups = stride, pad, groups

    def forward(self, x):
        return F.conv2d(x, self.W, self.b, stride=self.stride, pad=self.pad, groups=self.groups)

    def extra_repr(self):
        oc, c, kh, kw = self.W.shape
        groups = f", groups={self.groups}" if self.groups > 1 else ""
        return (f"{c * self.groups}, {oc}, kernel_size=({kh}, {kw}), stride={self.stride}, "
                f"pad={self.pad!r}{groups}")


class Linear(Module):
    """A fully connected layer. W (OUT, IN); He init before a ReLU, Glorot for the logits."""

    def __init__(self, in_features, out_features, bias=True, init="he"):
        super().__init__()
        self.W = Parameter(_on_default_device(_init((out_features, in_features), in_features,
                                                    out_features, init)))
        self.b = Parameter(_on_default_device(np.zeros(out_features, np.float32))) if bias else None

    def forward(self, x):
        return F.linear(x, self.W, self.b)

    def extra_repr(self):
        return f"{self.W.shape[1]}, {self.W.shape[0]}"


class BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share (ONNX export and folding recognise them by it)."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.gamma = Parameter(_on_default_device(np.ones(num_features, np.float32)))
        self.beta = Parameter(_on_default_device(np.zeros(num_features, np.float32)))
        self.register_buffer("running_mean", _on_default_device(np.zeros(num_features, np.float32)))
        self.register_buffer("running_var", _on_default_device(np.ones(num_features, np.float32)))
        self.momentum, self.eps = momentum, eps

    def forward(self, x, relu=False):
        # relu=True: the ReLU that follows, fused (Sequential asks for it; see there)
        return F.batch_norm(x, self.gamma, self.beta, self._buffers["running_mean"],
                            self._buffers["running_var"], self.training, self.momentum, self.eps,
                            relu)

    def extra_repr(self):
        return f"{self.gamma.shape[0]}"


class BatchNorm2d(BatchNorm):
    """Batch norm over (N, H, W) for each channel of (N, C, H, W) input."""


class BatchNorm1d(BatchNorm):
    """Batch norm over N for each feature of (N, C) input."""


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, pad=0):
        super().__init__()
        self.kernel_size, self.stride, self.pad = kernel_size, stride, pad

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, pad={self.pad!r}"


class AvgPool2d(MaxPool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.pad)


class GlobalAvgPool2d(Module):
    def forward(self, x):
        return F.global_avg_pool2d(x)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x)


class Dropout(Module):
    """Inverted dropout; p is the DROP probability (TFLearn's dropout(x, 0.3) is p=0.7)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class LocalResponseNorm(Module):
    """Cross-channel LRN with PyTorch's semantics (see nnlite.functions.normalization)."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def is_plain_batch_norm(layer) -> bool:
    """BatchNorm1d/2d, or a subclass that keeps their forward (one with its own forward may
    do more than normalize): what the fusion below and nnlite.fold may rewrite."""
    return isinstance(layer, BatchNorm) and type(layer).forward is BatchNorm.forward


def _fuses_with_relu(layer, following):
    """Whether Sequential runs `layer` and the `following` one as one op: a plain batch norm
    directly followed by a plain ReLU (exactly ReLU: a subclass may do more than max(x, 0))."""
    return is_plain_batch_norm(layer) and type(following) is ReLU


class Sequential(Module):
    """Layers applied in order; parameter names are "0.W", "1.b", ... as in PyTorch.

    A batch norm directly followed by a ReLU runs as one fused op (F.batch_norm(relu=True);
    which pairs: see _fuses_with_relu): the same values with one pass less over the
    activations. Only forward changes: the layers stay as they are, so parameter names, saved
    weights and layer-by-layer tools (nnlite.viz, Grad-CAM) do not change.
    """

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def _children(self):
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def forward(self, x):
        layers, i = self.layers, 0
        while i < len(layers):
            if i + 1 < len(layers) and _fuses_with_relu(layers[i], layers[i + 1]):
                x = layers[i](x, relu=True)  # this batch norm and the ReLU after it
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


class Residual(Module):
    """y = body(x) + shortcut(x): a residual connection (He et al., 2016).

    The addition gives the gradient a path around `body`: d(y)/d(x) = d(body)/d(x) + 1 (or the
    shortcut's own derivative), so deep stacks train even when `body` starts near zero.
    shortcut=None is the identity (x and body(x) must then have the same shape); otherwise it
    is usually a 1x1 convolution with the body's stride, which matches the channels and size.
    """

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))
