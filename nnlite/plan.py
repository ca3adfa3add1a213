"""Inference plans: an eval-mode network compiled, for one input shape, into a flat list of
kernel calls on the Numba backend.

    plan = Plan(model.eval(), (1, 48, 48))   # once
    logits = plan(x)                         # x (N, 1, 48, 48) float32 -> a new NumPy array

Why. Run through its modules, one face through the mobile net (batch 1) makes ~50 autograd
Function calls, each wrapping arrays in Tensors and checking their devices; it allocates
every activation anew (up to hundreds of minor page faults a pass, when malloc hands the
freed blocks back to the kernel: how many depends on its state, see RESULTS.md); and each depthwise-separable pair runs as two ops with an array between them. At
that size this Python is a good part of the time. A plan does the walking of the layers, the
padding and shape arithmetic and the reshaping of weights once, when it is built; a call
then only runs kernels, into buffers allocated once (for the largest batch seen) and
reused after, with no Tensor, no Function and no device check. The figures are in
benchmarks/RESULTS.md, "Per face".

What it compiles (anything else is a ValueError naming the layer, so a caller can fall back
to the module):

    Sequential, Residual         walked once; their layers become steps
    Conv2d                       dense, grouped or depthwise; a depthwise one (no bias)
                                 followed directly by a 1x1 convolution runs as one fused
                                 kernel (backends/numba/separable.py)
    BatchNorm1d/2d               folded into the layer before it (nnlite.fold) or, where
                                 nothing was folded, an eval-mode affine step
    ReLU                         fused into the step before it where that step can take it
                                 (a convolution, a dense layer, a residual sum, a batch
                                 norm, as Sequential fuses batch norm + ReLU), else a step
    MaxPool2d, GlobalAvgPool2d, Flatten (a view), Dropout (the identity in eval mode), Linear

A plan copies the weights when it is built (later changes to the module do not reach it)
and returns a copy of its output, so a caller never sees a buffer change under it. Its
buffers are per thread (a server's threads may call one plan together), made for the largest
batch the thread has run (a smaller batch uses their first images): meant for the few faces
of a frame, not for batches of hundreds.
"""

from __future__ import annotations

import threading

import numpy as np

from nnlite import backends
from nnlite import layers as L
from nnlite.backends.numba import inference, kernels, separable, winograd
from nnlite.functions.conv import as_pair, resolve_padding

output_size = kernels.output_size


# -- steps: one kernel call each, reading and writing slots of `values` ----------------------
class _Step:
    """One kernel call: reads values[i] for i in `inputs`, writes values[output] (a buffer
    the plan allocated once for the batch size). `takes_relu`: a ReLU after it can be fused."""

    takes_relu = False
    allocates = True  # False: the step's output is a view (Flatten), no buffer of its own

    def __init__(self, inputs, output):
        self.inputs, self.output, self.relu = inputs, output, False

    def scratch(self, n):
        """Working memory beyond the output for batches of up to n (None: none)."""
        return None

    def run(self, values, scratch):
        raise NotImplementedError


class _Conv(_Step):
    takes_relu = True

    def __init__(self, inputs, output, W, b, stride, pad, groups):
        super().__init__(inputs, output)
        self.W, self.b, self.stride, self.pad, self.groups = W, b, stride, pad, groups
        # Winograd's filter transform, done here once (a per-call cost unplanned)
        winograd_shaped = (groups == 1 and W.shape[2:] == (3, 3)
                           and W.shape[1] >= winograd.WINOGRAD_MIN_CHANNELS)
        self.U = inference.winograd_filters(W) if winograd_shaped else None

    def scratch(self, n):
        return {}  # conv2d_into makes its im2col or Winograd buffers in it on first use

    def run(self, values, scratch):
        y = values[self.output]
        inference.conv2d_into(values[self.inputs[0]], self.W, self.U, self.stride, self.pad,
                              self.groups, scratch, y)
        inference.bias_relu(y, self.b, self.relu)


class _Depthwise(_Step):
    takes_relu = True

    def __init__(self, inputs, output, W, b, stride, pad):
        super().__init__(inputs, output)
        self.W, self.b, self.stride, self.pad = W, b, stride, pad

    def run(self, values, scratch):
        y = values[self.output]
        inference.depthwise_into(values[self.inputs[0]], self.W, self.stride, self.pad, y)
        inference.bias_relu(y, self.b, self.relu)


class _Separable(_Step):
    takes_relu = True

    def __init__(self, inputs, output, W_depthwise, W_pointwise, b, stride, pad, out_hw):
        super().__init__(inputs, output)
        self.W_depthwise, self.W_pointwise, self.b = W_depthwise, W_pointwise, b
        self.stride, self.pad, self.out_hw = stride, pad, out_hw

    def scratch(self, n):
        return np.empty((self.W_depthwise.shape[0], self.out_hw[0] * self.out_hw[1]), np.float32)

    def run(self, values, scratch):
        separable.separable_forward(values[self.inputs[0]], self.W_depthwise, self.W_pointwise,
                                    self.b, self.stride, self.pad, self.relu, scratch,
                                    values[self.output])


class _Linear(_Step):
    takes_relu = True

    def __init__(self, inputs, output, W, b):
        super().__init__(inputs, output)
        self.WT, self.b = W.T, b  # x @ W.T: BLAS reads the transpose in place

    def run(self, values, scratch):
        inference.linear_into(values[self.inputs[0]], self.WT, self.b, self.relu,
                              values[self.output])


class _BatchNorm(_Step):
    takes_relu = True

    def __init__(self, inputs, output, gamma, beta, mean, inv_std):
        super().__init__(inputs, output)
        self.gamma, self.beta, self.mean, self.inv_std = gamma, beta, mean, inv_std

    def run(self, values, scratch):
        inference.batch_norm_into(values[self.inputs[0]], self.gamma, self.beta, self.mean,
                                  self.inv_std, self.relu, values[self.output])


class _Add(_Step):
    takes_relu = True  # the ReLU after a residual block

    def run(self, values, scratch):
        a, b = (values[i] for i in self.inputs)
        inference.add_relu(a, b, self.relu, values[self.output])


class _ReLU(_Step):
    def run(self, values, scratch):
        inference.relu_into(values[self.inputs[0]], values[self.output])


class _MaxPool(_Step):
    def __init__(self, inputs, output, kernel, stride, pad, out_shape):
        super().__init__(inputs, output)
        self.kernel, self.stride, self.pad, self.out_shape = kernel, stride, pad, out_shape

    def scratch(self, n):
        return np.empty((n,) + self.out_shape, np.int64)  # the winners, unread

    def run(self, values, scratch):
        x = values[self.inputs[0]]
        inference.max_pool_into(x, *self.kernel, self.stride, self.pad, scratch[:len(x)],
                                values[self.output])


class _GlobalAvgPool(_Step):
    def run(self, values, scratch):
        inference.global_avg_pool_into(values[self.inputs[0]], values[self.output])


class _Flatten(_Step):
    allocates = False

    def run(self, values, scratch):
        x = values[self.inputs[0]]
        values[self.output] = x.reshape(x.shape[0], -1)


# -- the plan --------------------------------------------------------------------------------
class Plan:
    """`module` (eval mode, on the CPU) compiled for inputs of shape (N,) + input_shape."""

    def __init__(self, module: L.Module, input_shape):
        for m in module.modules():
            # (only these two change with the mode: a container made by model.trunk(), say,
            # is in training mode and runs the same either way)
            if isinstance(m, (L.BatchNorm, L.Dropout)) and m.training:
                raise ValueError(f"nnlite.plan compiles eval-mode modules: {type(m).__name__} "
                                 "is in training mode (call .eval() first)")
        for name, array in module.state_dict().items():
            if backends.device_of(array) != "cpu":
                raise ValueError(f"nnlite.plan runs on the CPU: {name} is on "
                                 f"{backends.device_of(array)} (move the model with .to('cpu'))")
        self.input_shape = tuple(int(v) for v in input_shape)
        self._shapes = [self.input_shape]  # each slot's shape without the batch axis
        self._steps: list[_Step] = []
        self._output = self._add(module, 0, type(module).__name__)
        self.output_shape = self._shapes[self._output]
        self._local = threading.local()  # each thread's buffers (see _buffers)

    def __call__(self, x) -> np.ndarray:
        """The module's output for x (N,) + input_shape, as a new float32 array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"this plan was built for inputs (N, {shape}), got {x.shape}")
        n = x.shape[0]
        if n == 0:
            return np.zeros((0,) + self.output_shape, np.float32)
        values, scratches = self._buffers(n)
        values[0] = x
        try:
            for step, scratch in zip(self._steps, scratches):
                step.run(values, scratch)
            return values[self._output].copy()
        finally:
            values[0] = None  # the caller's array is not kept

    def __len__(self):
        """How many kernel steps a call runs."""
        return len(self._steps)

    def _buffers(self, n):
        """This thread's (values, scratches) for a batch of n. The buffers are made for the
        largest batch this thread has run, and a smaller one runs in their first n images
        (contiguous views): one set of buffers, whatever mix of face counts the frames bring."""
        mine = self._local.__dict__
        if n > mine.get("capacity", 0):
            values = [None] * len(self._shapes)
            for step in self._steps:
                if step.allocates:
                    values[step.output] = np.empty((n,) + self._shapes[step.output], np.float32)
            mine["capacity"], mine["full"] = n, values
            mine["scratches"] = [step.scratch(n) for step in self._steps]
            mine["views"] = {}
        if n not in mine["views"]:
            mine["views"][n] = [None if v is None else v[:n] for v in mine["full"]]
        return mine["views"][n], mine["scratches"]

    # -- compiling ---------------------------------------------------------------------------
    def _emit(self, step_type, inputs, out_shape, *args):
        self._shapes.append(tuple(out_shape))
        step = step_type(tuple(inputs), len(self._shapes) - 1, *args)
        self._steps.append(step)
        return step.output

    def _add(self, layer, x, path) -> int:
        """Steps for `layer` reading slot x; returns the slot of its output."""
        kind = type(layer)
        if isinstance(layer, L.Sequential) and kind.forward is L.Sequential.forward:
            return self._add_sequential(layer.layers, x, path)
        if kind is L.Residual:
            body = self._add(layer.body, x, path + ".body")
            short = x if layer.shortcut is None else self._add(layer.shortcut, x,
                                                               path + ".shortcut")
            if self._shapes[body] != self._shapes[short]:
                raise ValueError(f"{path}: the residual's body gives {self._shapes[body]} but "
                                 f"its shortcut {self._shapes[short]}")
            return self._emit(_Add, (body, short), self._shapes[body])
        if kind is L.Conv2d:
            return self._conv(layer, x, path)
        if kind is L.Linear:
            return self._linear(layer, x, path)
        if L.is_plain_batch_norm(layer):
            return self._batch_norm(layer, x, path)
        if kind is L.ReLU:
            return self._emit(_ReLU, (x,), self._shapes[x])
        if kind is L.MaxPool2d:
            return self._max_pool(layer, x, path)
        if kind is L.GlobalAvgPool2d:
            return self._emit(_GlobalAvgPool, (x,), self._image_shape(x, path)[:1])
        if kind is L.Flatten:
            return self._emit(_Flatten, (x,), (int(np.prod(self._shapes[x])),))
        if kind is L.Dropout:
            return x  # eval mode: the identity
        raise ValueError(f"nnlite.plan cannot compile {path} ({kind.__name__}): it knows "
                         "Sequential, Residual, Conv2d, Linear, BatchNorm1d/2d, ReLU, MaxPool2d, "
                         "GlobalAvgPool2d, Flatten and Dropout (run the module itself instead)")

    def _add_sequential(self, layers, x, path) -> int:
        last = None  # the step that made x inside this Sequential: a ReLU may fuse into it
        i = 0
        while i < len(layers):
            layer, here = layers[i], f"{path}.{i}"
            following = layers[i + 1] if i + 1 < len(layers) else None
            if type(layer) is L.ReLU and last is not None and last.takes_relu and not last.relu:
                last.relu = True  # max(., 0) as that step writes its output
                i += 1
                continue
            before = len(self._steps)
            if self._is_separable(layer, following, x):
                y = self._separable(layer, following, x, here)
                i += 2
            else:
                y = self._add(layer, x, here)
                i += 1
            if y != x:  # (Dropout adds no step: the step before it still made x)
                made = self._steps[before:]
                last = made[-1] if made and made[-1].output == y else None
                x = y
        return x

    # -- one method per kind of layer -------------------------------------------------------
    def _image_shape(self, x, path):
        if len(self._shapes[x]) != 3:
            raise ValueError(f"{path} needs (N, C, H, W) input, gets (N, "
                             f"{', '.join(map(str, self._shapes[x]))})")
        return self._shapes[x]

    @staticmethod
    def _weights(layer):
        W = np.ascontiguousarray(layer.W.data, np.float32).copy()
        b = None if layer.b is None else np.ascontiguousarray(layer.b.data, np.float32).copy()
        return W, b

    def _conv_geometry(self, layer, x, path):
        """(W, b, stride, pad (top, bottom, left, right), output shape) of a Conv2d on slot x."""
        c, h, w = self._image_shape(x, path)
        W, b = self._weights(layer)
        oc, wc, kh, kw = W.shape
        if wc * layer.groups != c:
            raise ValueError(f"{path}: input has {c} channels, the weights expect "
                             f"{wc * layer.groups}")
        stride = as_pair(layer.stride)
        pad = resolve_padding(layer.pad, (h, w), (kh, kw), stride)
        out = (oc, output_size(h, kh, stride[0], pad[0], pad[1]),
               output_size(w, kw, stride[1], pad[2], pad[3]))
        return W, b, stride, pad, out

    def _conv(self, layer, x, path):
        W, b, stride, pad, out = self._conv_geometry(layer, x, path)
        if W.shape[1] == 1 and layer.groups == self._shapes[x][0]:  # depthwise
            return self._emit(_Depthwise, (x,), out, W, b, stride, pad)
        return self._emit(_Conv, (x,), out, W, b, stride, pad, layer.groups)

    def _is_separable(self, layer, following, x):
        """A depthwise convolution without bias directly followed by a 1x1 convolution
        (stride 1, no padding, not grouped): the pair the fused kernel runs."""
        if type(layer) is not L.Conv2d or type(following) is not L.Conv2d:
            return False
        if len(self._shapes[x]) != 3 or layer.b is not None or layer.W.shape[1] != 1:
            return False
        if layer.groups != self._shapes[x][0]:
            return False
        return (following.W.shape[2:] == (1, 1) and following.groups == 1
                and as_pair(following.stride) == (1, 1)
                and resolve_padding(following.pad, (1, 1), (1, 1), (1, 1)) == (0, 0, 0, 0))

    def _separable(self, depthwise_layer, pointwise_layer, x, path):
        W_d, _, stride, pad, (m, oh, ow) = self._conv_geometry(depthwise_layer, x, path)
        W_p, b = self._weights(pointwise_layer)
        if W_p.shape[1] != m:
            raise ValueError(f"{path}: the 1x1 convolution expects {W_p.shape[1]} channels, "
                             f"the depthwise one gives {m}")
        return self._emit(_Separable, (x,), (W_p.shape[0], oh, ow), W_d, W_p, b, stride, pad,
                          (oh, ow))

    def _linear(self, layer, x, path):
        W, b = self._weights(layer)
        if self._shapes[x] != (W.shape[1],):
            raise ValueError(f"{path} expects (N, {W.shape[1]}) input, gets (N, "
                             f"{', '.join(map(str, self._shapes[x]))}) (a Flatten missing?)")
        return self._emit(_Linear, (x,), (W.shape[0],), W, b)

    def _batch_norm(self, layer, x, path):
        c = self._shapes[x][0]
        if c != layer.gamma.shape[0]:
            raise ValueError(f"{path} has {layer.gamma.shape[0]} channels, its input {c}")
        host = lambda a: np.ascontiguousarray(a, np.float32).copy()  # noqa: E731
        var = host(layer._buffers["running_var"])
        inv_std = (1.0 / (var + layer.eps) ** 0.5).astype(np.float32)  # as the kernels do
        return self._emit(_BatchNorm, (x,), self._shapes[x], host(layer.gamma.data),
                          host(layer.beta.data), host(layer._buffers["running_mean"]), inv_std)

    def _max_pool(self, layer, x, path):
        c, h, w = self._image_shape(x, path)
        kernel = as_pair(layer.kernel_size)
        stride = as_pair(layer.stride if layer.stride is not None else layer.kernel_size)
        pad = resolve_padding(layer.pad, (h, w), kernel, stride)
        out = (c, output_size(h, kernel[0], stride[0], pad[0], pad[1]),
               output_size(w, kernel[1], stride[1], pad[2], pad[3]))
        return self._emit(_MaxPool, (x,), out, kernel, stride, pad, out)
