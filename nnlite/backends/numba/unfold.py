"""One image unfolded into its im2col matrix, and the adjoint: the Numba convolution's copies.

The NumPy backend unfolds the whole batch into one im2col matrix, which for the compact net's
second layer at batch 64 is too large for any cache, so the copy and every GEMM stream it from
main memory. kernels.conv2d_forward/backward instead give each thread whole images: it
unfolds one image into its own buffer, which stays in cache, and multiplies it at once with
NumPy's BLAS, single-threaded (two to three times the GEMM throughput). The threads are plain
Python threads (pool): these kernels are compiled with nogil=True and BLAS releases
the GIL too, so they run side by side. (BLAS called from inside a parallel Numba loop was
tried: Numba's np.dot needs SciPy's BLAS, which was slower here than NumPy's.)

    im2col_image   x (C, H, W) -> col (C*KH*KW, OH*OW), numpy_kernels.im2col's layout for one
                   image
    col2im_image   its adjoint: the windows in col added up into x (C, H, W)
    unfold_image   im2col_image, or no copy at all where the image already is its matrix
"""

from numba import njit

from nnlite.backends.numba.compile import CACHE


@njit(nogil=True, cache=CACHE)
def im2col_image(x, kh, kw, sh, sw, pt, pl, oh, ow, col):
    # col[(c*KH + i)*KW + j, p*OW + q] = x[c, p*SH + i - pt, q*SW + j - pl], 0 outside x.
    # Written this way LLVM vectorizes the copy (two innocent-looking variants ran 4-7x slower:
    # benchmarks/RESULTS.md).
    c, h, w = x.shape
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                for p in range(oh):
                    base, y = p * ow, p * sh + i - pt
                    if y < 0 or y >= h:
                        for q in range(ow):
                            col[row, base + q] = 0
                    else:
                        for q in range(ow):
                            xx = q * sw + j - pl
                            col[row, base + q] = x[ci, y, xx] if 0 <= xx < w else 0


@njit(nogil=True, cache=CACHE)
def col2im_image(col, kh, kw, sh, sw, pt, pl, oh, ow, x):
    # The adjoint of im2col_image: x (C, H, W) = the windows in col, added up.
    c, h, w = x.shape
    x[:] = 0
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                for p in range(oh):
                    y = p * sh + i - pt
                    if 0 <= y < h:
                        for q in range(ow):
                            xx = q * sw + j - pl
                            if 0 <= xx < w:
                                x[ci, y, xx] += col[row, p * ow + q]


def unfold_image(image, kh, kw, sh, sw, pt, pl, oh, ow, col):
    """One image's im2col matrix: written into `col`, or, for a 1x1 convolution with stride 1
    and no padding (MobileNet's pointwise layers), the image itself seen as (C, H*W), which
    is exactly that matrix, so there is nothing to copy."""
    if kh == kw == sh == sw == 1 and pt == pl == 0 and image.shape[1:] == (oh, ow):
        return image.reshape(image.shape[0], oh * ow)
    im2col_image(image, kh, kw, sh, sw, pt, pl, oh, ow, col)
    return col
