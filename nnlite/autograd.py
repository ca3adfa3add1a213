"""Define-by-run autograd: `Tensor`, `Function` and the backward pass.

Every op is a `Function` subclass with `forward` and `backward` side by side. Calling a
function on tensors runs `forward` on their arrays and, when gradients are wanted, records
the function as the `creator` of its outputs. The recorded functions form a graph built on
the fly ("define by run"); `Tensor.backward()` walks it in reverse topological order and
calls each `backward` with the gradient of the loss with respect to that function's output.

Arrays are NumPy arrays on the CPU and CuPy arrays on a GPU. A tensor never moves between
them on its own: `tensor.to("cuda")` / `tensor.to("cpu")` are the only ways across.
"""

import contextlib
import threading

import numpy as np

from nnlite import backends

# Whether ops record the graph, per thread (as PyTorch's grad mode is): one switch for the
# whole process breaks as soon as two threads use it, e.g. a server's inference thread
# running a backward pass (saliency) while a video job's thread predicts under no_grad.
# Interleaved, their save/restore pairs can also leave the switch off for good.
_state = threading.local()


@contextlib.contextmanager
def no_grad():
    """Run ops without recording the graph (inference, optimizer steps), in this thread."""
    previous, _state.grad_enabled = is_grad_enabled(), False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


def as_array(value, like=None):
    """Turn a Python number or list, or an array, into an array.

    Arrays are kept as they are (their dtype too, so gradient checks can run in float64).
    Python numbers and lists become float32, or the dtype and device of `like` when given:
    a Python scalar never turns a float32 computation into float64.
    """
    if backends.is_array(value):
        return value
    if like is not None:  # a Python or NumPy scalar next to a tensor takes the tensor's dtype
        return backends.get_array_module(like).asarray(value, dtype=like.dtype)
    if isinstance(value, np.generic):  # a NumPy scalar (e.g. a reduction's result) keeps its dtype
        return np.asarray(value)
    return np.asarray(value, dtype=np.float32)


class Tensor:
    """An array plus the bookkeeping that backpropagation needs.

    Attributes:
        data: the NumPy (CPU) or CuPy (GPU) array.
        grad: an array of the same shape once `backward` has reached this tensor, else None.
        requires_grad: whether gradients flow to this tensor (True for parameters).
        creator: the Function that produced this tensor (None for leaves).
    """

    __array_priority__ = 100  # so that `ndarray + Tensor` calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, name=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = as_array(data)
        self.grad = None
        self.requires_grad = requires_grad
        self.creator = None
        self.name = name

    # -- array-like properties -------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self) -> str:
        return backends.device_of(self.data)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device}{grad})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (an explicit device-to-host copy for GPU tensors)."""
        return backends.to_numpy(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python float (e.g. a loss)."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return float(self.numpy().reshape(-1)[0])

    def to(self, device: str) -> "Tensor":
        """A copy of this tensor on `device` ("cpu" or "cuda"); the tensor itself if already there."""
        if backends.device_of(self.data) == device:
            return self
        out = Tensor(backends.to_device(self.data, device), requires_grad=self.requires_grad)
        out.name = self.name
        return out

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    def set_creator(self, function):
        self.creator = function

    # -- backpropagation -------------------------------------------------------------------
    def backward(self, grad=None):
        """Backpropagate from this tensor through the graph that produced it.

        `grad` is dLoss/dself; it defaults to ones, which is what you want for a scalar loss.
        Gradients accumulate (+=) into `.grad` of every tensor that requires them.
        """
        xp = backends.get_array_module(self.data)
        if grad is None:
            grad = xp.ones_like(self.data)
        grad = as_array(grad, like=self.data)
        if grad.shape != self.shape:
            raise ValueError(f"backward: grad has shape {grad.shape}, tensor has {self.shape}")
        if self.creator is None:
            self._accumulate(grad)
            return

        # Gradients of intermediate tensors are held here, not stored on the tensors, so
        # they are freed as soon as their consumer has used them.
        grads = {id(self): grad}
        order = _topological_order(self)
        for function in order:
            output_grads = [grads.pop(id(out), None) for out in function.outputs]
            if all(g is None for g in output_grads):
                continue
            output_grads = [
                backends.get_array_module(out.data).zeros_like(out.data) if g is None else g
                for g, out in zip(output_grads, function.outputs)
            ]
            input_grads = function.backward(*output_grads)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for tensor, g in zip(function.inputs, input_grads):
                if g is None or not tensor.requires_grad:
                    continue
                if tensor.creator is None:  # a leaf: store it where the user can read it
                    tensor._accumulate(g)
                elif id(tensor) in grads:
                    grads[id(tensor)] = grads[id(tensor)] + g
                else:
                    grads[id(tensor)] = g
            function.release()  # drop saved arrays: each graph is backpropagated once

    def _accumulate(self, grad):
        if grad.dtype != self.data.dtype:
            raise TypeError(f"gradient dtype {grad.dtype} does not match tensor dtype {self.dtype}")
        self.grad = grad if self.grad is None else self.grad + grad

    # -- operators (defined in nnlite.functions.basic, attached at import) ------------------
    # __add__, __mul__, __matmul__, sum, mean, reshape, transpose, __getitem__, ...


def _topological_order(root: Tensor):
    """Functions reachable from `root`, each after every function that consumes its outputs."""
    order, seen = [], set()
    stack = [(root.creator, False)]
    while stack:  # iterative depth-first search: deep nets must not hit the recursion limit
        function, children_done = stack.pop()
        if children_done:
            order.append(function)
            continue
        if id(function) in seen:
            continue
        seen.add(id(function))
        stack.append((function, True))
        if getattr(function, "released", False):
            raise RuntimeError(
                "backward through a graph a second time: its saved arrays were freed after the "
                "first backward. Run the forward pass again."
            )
        for tensor in function.inputs:
            if tensor.creator is not None and id(tensor.creator) not in seen:
                stack.append((tensor.creator, False))
    return order[::-1]


class Function:
    """One differentiable op. Subclasses implement `forward(*arrays)` and `backward(*grads)`.

    `forward` receives raw arrays and returns an array (or a tuple of arrays); anything
    `backward` needs is saved on `self`. `backward` receives dLoss/dOutput for each output and
    returns dLoss/dInput for each input (None for inputs that take no gradient).
    """

    def __call__(self, *inputs):
        inputs = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        arrays = [x.data for x in inputs]
        backends.check_same_device(arrays, op=type(self).__name__)
        outputs = self.forward(*arrays)
        if not isinstance(outputs, tuple):
            outputs = (outputs,)
        outputs = [Tensor(y) for y in outputs]
        if is_grad_enabled() and any(x.requires_grad for x in inputs):
            self.inputs = inputs
            self.outputs = outputs
            for y in outputs:
                y.requires_grad = True
                y.set_creator(self)
        return outputs[0] if len(outputs) == 1 else outputs

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    def release(self):
        """Free the arrays saved for backward once it has run: a graph is used once."""
        vars(self).clear()
        self.released = True
