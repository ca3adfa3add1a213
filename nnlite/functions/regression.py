"""The wing loss: robust regression for landmark coordinates, masked per sample.

Why the wing loss rather than smooth L1: a landmark net's errors are mostly small once it
has learnt the face's layout, and a loss that is L2 near zero (smooth L1) gives those errors
vanishing gradients, so the points stop short of sharp. The wing loss (Feng et al., "Wing
Loss for Robust Facial Landmark Localisation with Convolutional Neural Networks", CVPR 2018)
is a log near zero, whose slope w / (eps + |d|) grows as the error shrinks, and L1 beyond w,
so a few wild labels (a teacher's mesh on a face it misread) pull no harder than L1 does.
Feng et al. found it better than L1, L2 and smooth L1 on 300-W and AFLW.
"""

from nnlite.autograd import Function, Tensor
from nnlite.backends import check_same_device, get_array_module


class WingLoss(Function):
    """Weighted mean wing loss between predictions and targets.

    Shapes: pred (N, ...), target as pred -> loss (). weight: (N,) per sample or pred's
    shape per element, >= 0; zero drops an element, so rows without a label (whose targets
    may be NaN) leave both the loss and the gradient untouched.
        d = pred - target (taken as 0 where the weight is 0)
        wing(d) = w ln(1 + |d| / eps)   if |d| < w
                  |d| - C               otherwise, C = w - w ln(1 + w / eps) (continuous at w)
        loss = sum(weight * wing(d)) / sum(weight)   (0 when every weight is 0)
    w is the width of the log region and eps its curvature, both in the targets' units
    (Feng et al. use w = 10, eps = 2 for pixel coordinates on faces about 100 px wide; on
    coordinates normalised by the face size, scale both by the same factor).
    dloss/dpred = weight / sum(weight) * sign(d) * (w / (eps + |d|) if |d| < w else 1),
    and dloss/dtarget is its negative. The slope has kinks at d = 0 and |d| = w, where a
    gradient check must keep away. Saved: d and the normalised weights.
    """

    def __init__(self, weight, width, curvature):
        self.weight, self.width, self.curvature = weight, width, curvature

    def forward(self, pred, target):
        xp = get_array_module(pred)
        dtype = pred.dtype.type
        w, eps = dtype(self.width), dtype(self.curvature)
        weight = xp.broadcast_to(self.weight.astype(pred.dtype).reshape(
            self.weight.shape + (1,) * (pred.ndim - self.weight.ndim)), pred.shape)
        total = weight.sum()
        # Normalised weights: an all-zero batch (no labelled row) gives a zero loss, not 0/0.
        self.scale = weight / xp.maximum(total, dtype(1e-12))
        self.d = xp.where(weight > 0, pred - target, dtype(0))
        a = xp.abs(self.d)
        c = w - w * xp.log(dtype(1) + w / eps)
        wing = xp.where(a < w, w * xp.log(dtype(1) + a / eps), a - c)
        return (self.scale * wing).sum()

    def backward(self, gloss):
        xp = get_array_module(gloss)
        dtype = self.d.dtype.type
        w, eps = dtype(self.width), dtype(self.curvature)
        a = xp.abs(self.d)
        slope = xp.where(a < w, w / (eps + a), dtype(1))
        gpred = gloss * self.scale * xp.sign(self.d) * slope
        return gpred, -gpred


def wing_loss(pred, target, weight=None, width=10.0, curvature=2.0):
    """See `WingLoss`. target: array or Tensor of pred's shape; weight: None (all ones),
    (N,) per sample or pred's shape, on pred's device."""
    data = pred.data if isinstance(pred, Tensor) else pred
    target_data = target.data if isinstance(target, Tensor) else target
    if tuple(target_data.shape) != tuple(data.shape):
        raise ValueError(f"target must have pred's shape {data.shape}, got {target_data.shape}")
    if target_data.dtype != data.dtype:
        raise TypeError(f"target is {target_data.dtype} but pred {data.dtype}")
    xp = get_array_module(data)
    if weight is None:
        weight = xp.ones(data.shape[:1], dtype=data.dtype)
    weight = weight.data if isinstance(weight, Tensor) else weight
    if tuple(weight.shape) not in (tuple(data.shape[:1]), tuple(data.shape)):
        raise ValueError(f"weight must have shape ({data.shape[0]},) or {data.shape}, "
                         f"got {weight.shape}")
    if not (width > 0 and curvature > 0):
        raise ValueError(f"width and curvature must be > 0, got {width} and {curvature}")
    check_same_device([data, target_data, weight], op="wing_loss")
    return WingLoss(weight, width, curvature)(pred, target)
