"""The Numba CPU backend: kernels.py (the kernel contract, compiled), with one module per topic
beside it: unfold (one image's im2col/col2im), winograd (the 3x3 fast path), depthwise, pool
(the convolutions' thread pool) and compile (the cache folder, serial and parallel twins).

Nothing is imported here: `import nnlite.backends.numba.pool` must not compile any kernel.
"""
