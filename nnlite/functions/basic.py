"""Arithmetic, reductions and shape ops: what Tensor's operators (`+ * @ [] .sum()`) call.

Broadcasting in forward means summing in backward: if x (3, 1) was broadcast to (3, 4),
dL/dx is dL/dy summed over the broadcast axis (`sum_to`).
"""

from nnlite.autograd import Function, Tensor, as_array
from nnlite.backends import get_array_module


def sum_to(g, shape):
    """Sum g over the axes that broadcasting added or stretched, so that it has `shape`."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, size in enumerate(shape) if size == 1 and g.shape[lead + i] != 1
    )
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


class Add(Function):
    """y = a + b (broadcasting)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    """y = a - b (broadcasting)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


class Mul(Function):
    """y = a * b (broadcasting). Saves a and b."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        return sum_to(gy * self.b, self.a.shape), sum_to(gy * self.a, self.b.shape)


class Div(Function):
    """y = a / b (broadcasting). Saves a and b."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        ga = gy / self.b
        gb = -gy * self.a / (self.b * self.b)
        return sum_to(ga, self.a.shape), sum_to(gb, self.b.shape)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """y = x ** p for a constant p. Saves x."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        self.x = x
        return x**self.p

    def backward(self, gy):
        return gy * self.p * self.x ** (self.p - 1)


class Exp(Function):
    """y = exp(x). Saves y (dy/dx = y)."""

    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    """y = log(x). Saves x."""

    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class MatMul(Function):
    """y = a @ b for 2-D a (M, K) and b (K, N). Saves a and b.

    dL/da = gy @ b.T and dL/db = a.T @ gy: the shapes only fit one way.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        return gy @ self.b.T, self.a.T @ gy


class Sum(Function):
    """y = x.sum(axis, keepdims). The gradient is gy copied back over the summed axes."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape = x.shape
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        if not self.keepdims and self.axis is not None:
            axes = (self.axis,) if isinstance(self.axis, int) else self.axis
            axes = sorted(a % len(self.shape) for a in axes)
            for a in axes:
                gy = get_array_module(gy).expand_dims(gy, a)
        return get_array_module(gy).broadcast_to(gy, self.shape).copy()


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.x_shape)


class Transpose(Function):
    def __init__(self, axes=None):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return gy.transpose(inverse)


class GetItem(Function):
    """y = x[index]. The gradient scatters gy back into zeros (adding where indices repeat)."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.x_shape, self.dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.x_shape, dtype=self.dtype)
        # Unbuffered: a repeated index adds up. CuPy >= 13 has add.at too (its cupyx.scatter_add
        # is deprecated in favour of it).
        xp.add.at(gx, self.index, gy)
        return gx


# -- functional wrappers --------------------------------------------------------------------
def _coerce_operands(a, b):
    """Make the non-Tensor operand an array with the Tensor operand's dtype and device."""
    if isinstance(a, Tensor) and not isinstance(b, Tensor):
        b = as_array(b, like=a.data)
    elif isinstance(b, Tensor) and not isinstance(a, Tensor):
        a = as_array(a, like=b.data)
    return a, b


def add(a, b):
    return Add()(*_coerce_operands(a, b))


def sub(a, b):
    return Sub()(*_coerce_operands(a, b))


def mul(a, b):
    return Mul()(*_coerce_operands(a, b))


def div(a, b):
    return Div()(*_coerce_operands(a, b))


def neg(x):
    return Neg()(x)


def pow(x, p):  # noqa: A001 - mirrors the operator
    return Pow(p)(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def matmul(a, b):
    return MatMul()(a, b)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    if axis is None:
        count = x.size
    else:
        axes = (axis,) if isinstance(axis, int) else axis
        count = 1
        for a in axes:
            count *= x.shape[a]
    return sum(x, axis, keepdims) * (1.0 / count)


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape(shape)(x)


def transpose(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose(axes or None)(x)


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    return GetItem(index)(x)


def _install_operators():
    """Give Tensor its operators; they are thin calls to the Functions above."""
    Tensor.__add__ = add
    Tensor.__radd__ = lambda self, other: add(other, self)
    Tensor.__sub__ = sub
    Tensor.__rsub__ = lambda self, other: sub(other, self)
    Tensor.__mul__ = mul
    Tensor.__rmul__ = lambda self, other: mul(other, self)
    Tensor.__truediv__ = div
    Tensor.__rtruediv__ = lambda self, other: div(other, self)
    Tensor.__neg__ = neg
    Tensor.__pow__ = pow
    Tensor.__matmul__ = matmul
    Tensor.__getitem__ = getitem
    Tensor.sum = sum
    Tensor.mean = mean
    Tensor.reshape = reshape
    Tensor.transpose = transpose
    Tensor.T = property(lambda self: transpose(self))
    Tensor.exp = exp
    Tensor.log = log


_install_operators()
