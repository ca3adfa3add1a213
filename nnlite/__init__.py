"""nnlite: a minimal define-by-run autograd and layer library, written to be read.

    import nnlite
    import nnlite.functional as F
    from nnlite import layers, optim

Three backends run the same maths: "numpy" (the readable reference), "numba" (compiled CPU
kernels) and "cuda" (CuPy arrays, cuBLAS, Numba CUDA kernels). Pick one with
`nnlite.use(name)` or the NNLITE_BACKEND environment variable.
"""

import warnings

from nnlite import functional  # noqa: F401  (installs Tensor's operators)
from nnlite import layers, optim  # noqa: F401
from nnlite.autograd import Function, Tensor, is_grad_enabled, no_grad
from nnlite.backends import available, current, to_device, use
from nnlite.device import to_numpy  # one for Tensors and arrays on any device
from nnlite.gradcheck import GradcheckError, gradcheck
from nnlite.memory import keep_freed_memory
from nnlite.random import seed
from nnlite.serialization import WeightFileError, load, read_meta, save

__version__ = "0.1.0"

# `python -m nnlite.gradcheck` runs that module a second time, as __main__, after this package
# has imported it, and runpy warns about that. Harmless here: the command uses only its own names.
warnings.filterwarnings("ignore", message="'nnlite.gradcheck' found in sys.modules",
                        category=RuntimeWarning)


__all__ = [
    "Tensor", "Function", "no_grad", "is_grad_enabled", "functional", "layers", "optim",
    "use", "current", "available", "to_device", "to_numpy", "seed", "save", "load",
    "read_meta", "WeightFileError", "gradcheck", "GradcheckError", "keep_freed_memory",
]
