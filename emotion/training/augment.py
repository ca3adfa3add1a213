"""Data augmentation for training, and test-time augmentation (TTA) views, all in NumPy.

Training: each image of a batch gets its own random affine transform (shift, small rotation
and zoom, horizontal flip), applied to the whole batch at once: we build every sample's
sampling grid with NumPy and read the pixels with bilinear interpolation, with no Python loop
over images. Then random erasing. All randomness comes from the Generator passed in, so the
same seed gives the same batch.

Augmentation runs on preprocessed batches (train.py preprocesses the dataset once): a shift
or rotation of the preprocessed image is, up to interpolation and the borders, the
preprocessed shifted image, and it saves redoing the preprocessing every epoch.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Augmenter:
    """Random geometric augmentation plus random erasing of (N, C, H, W) float32 batches.

    shift:          max translation in pixels along each axis (uniform, sub-pixel). The border
                    pixels are repeated into the uncovered area, like pad-and-crop with edge
                    padding.
    rotate_degrees: max rotation either way. Faces in FER2013 are roughly upright; 10 degrees
                    covers the head tilt of webcam users without turning faces sideways.
    zoom:           max relative scale change either way (0.1: 90%..110%), for face crops
                    that are a little tighter or looser than FER2013's.
    flip:           mirror a random half of the images left-right. A mirrored face shows the
                    same expression, so this doubles the data for free.
    erase_prob:     probability that an image gets one random rectangle set to `erase_value`
                    (Cutout / random erasing): the model learns not to rely on one region
                    alone (hands, glasses and hair cover parts of real faces).
    erase_area:     (min, max) fraction of the image that rectangle covers.
    erase_value:    its value; 0 is the mean of an image after per-image normalization.
    """

    shift: float = 4.0
    rotate_degrees: float = 10.0
    zoom: float = 0.1
    flip: bool = True
    erase_prob: float = 0.25
    erase_area: tuple = (0.02, 0.15)
    erase_value: float = 0.0

    def __post_init__(self):
        if min(self.shift, self.rotate_degrees, self.zoom) < 0 or not 0 <= self.zoom < 1:
            raise ValueError("shift, rotate_degrees must be >= 0 and zoom in [0, 1)")
        if not 0 <= self.erase_prob <= 1 or not 0 < self.erase_area[0] <= self.erase_area[1] <= 1:
            raise ValueError("erase_prob must be in [0, 1] and erase_area 0 < min <= max <= 1")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator, points=None, pose=None):
        """(N, C, H, W) float32 -> a new augmented (N, C, H, W) float32 batch.

        With `points` (N, 68, 2) pixels and `pose` (N, 3) degrees (a landmark model's
        labels), returns (batch, points, pose) with the labels moved as the pixels were:
        they stay true (transform_points, transform_pose)."""
        if batch.ndim != 4:
            raise ValueError(f"expected a batch (N, C, H, W), got shape {batch.shape}")
        n, _, h, w = batch.shape
        # Every random number is drawn whatever the settings, in a fixed order, so one seed
        # gives one batch and turning one augmentation off does not change the others.
        angle = np.deg2rad(rng.uniform(-1, 1, n) * self.rotate_degrees)
        scale = 1 + rng.uniform(-1, 1, n) * self.zoom
        shift = rng.uniform(-1, 1, (n, 2)) * self.shift
        mirror = (rng.random(n) < 0.5) & self.flip
        out = affine(batch, angle, scale, shift, mirror)
        out = random_erase(out, rng, self.erase_prob, self.erase_area, self.erase_value)
        if points is None:
            return out
        return (out, transform_points(points, angle, scale, shift, mirror, (h, w)),
                transform_pose(pose, angle, mirror))


def affine(batch, angle, scale, shift, mirror) -> np.ndarray:
    """One transform per image, all images at once: mirror left-right where `mirror` (N,)
    bool, rotate by `angle` (radians, (N,)) and zoom by `scale` (N,) about the centre, then
    shift by `shift` (N, 2) pixels (dy, dx). batch (N, C, H, W) -> float32 (N, C, H, W).

    Resampling works backwards: for every output pixel we compute where it comes from in the
    input (the inverse transform) and interpolate there, so every output pixel gets exactly
    one value (a forward map would leave holes). Positions outside the image take the
    nearest edge pixel.
    """
    n, c, h, w = batch.shape
    angle, scale, shift = (np.asarray(a, np.float32) for a in (angle, scale, shift))
    cy, cx = np.float32((h - 1) / 2), np.float32((w - 1) / 2)
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                         indexing="ij")
    # Walk the transform backwards from the output pixel. Undo the shift, relative to the
    # centre: (N, H, W)
    y = ys[None] - cy - shift[:, 0, None, None]
    x = xs[None] - cx - shift[:, 1, None, None]
    # Undo the rotation and zoom: rotate by -angle and divide by the scale.
    cos = (np.cos(angle) / scale)[:, None, None]
    sin = (np.sin(angle) / scale)[:, None, None]
    src_y = cos * y - sin * x + cy
    src_x = sin * y + cos * x
    # Undo the mirror (its own inverse) and go back from centre-relative to pixel coordinates.
    src_x = np.where(np.asarray(mirror)[:, None, None], -src_x, src_x) + cx
    return bilinear(batch, src_y, src_x)


def transform_points(points, angle, scale, shift, mirror, shape) -> np.ndarray:
    """Where `affine` moves each landmark: points (N, P, 2) as (x, y) pixels -> (N, P, 2).

    Points are continuous pixel coordinates, pixel i covering [i, i + 1) (MediaPipe's and
    OpenCV resize's convention, emotion.face.ibug68), so the image's centre is at (w/2, h/2);
    `affine` indexes pixel centres, whose centre is ((w-1)/2, (h-1)/2): the same place.
    `affine` maps an output pixel back to its source; a point goes the other way, source to
    output: mirror about the centre, then rotate by +angle and zoom, then shift. Rotating
    by +angle in (y, x) pixel coordinates (y down) turns the image clockwise on screen.
    A mirror also swaps the points' names: the subject's right eye becomes the image's
    other eye, so the indices are permuted (emotion.face.ibug68.FLIP). NaN (no label)
    stays NaN.
    """
    from emotion.face.ibug68 import FLIP

    points = np.asarray(points, np.float32)
    h, w = shape
    cy, cx = np.float32(h / 2), np.float32(w / 2)
    mirror = np.asarray(mirror, bool)
    points = np.where(mirror[:, None, None], points[:, FLIP], points)
    x = points[..., 0] - cx
    y = points[..., 1] - cy
    x = np.where(mirror[:, None], -x, x)
    cos = (np.cos(angle) * scale).astype(np.float32)[:, None]
    sin = (np.sin(angle) * scale).astype(np.float32)[:, None]
    shift = np.asarray(shift, np.float32)
    out_y = cos * y + sin * x + cy + shift[:, 0, None]
    out_x = -sin * y + cos * x + cx + shift[:, 1, None]
    return np.stack([out_x, out_y], axis=-1).astype(np.float32)


def transform_pose(pose, angle, mirror) -> np.ndarray:
    """The head pose (N, 3) yaw/pitch/roll degrees of the faces `affine` made: a mirror
    turns the head the other way (yaw and roll change sign, pitch stays); the clockwise
    rotation by `angle` adds to the roll (positive roll is clockwise: emotion.face.pose)."""
    pose = np.array(pose, np.float32)
    mirror = np.asarray(mirror, bool)
    pose[mirror, 0] *= -1
    pose[mirror, 2] *= -1
    pose[:, 2] += np.rad2deg(np.asarray(angle, np.float32))
    return pose


def bilinear(batch, src_y, src_x) -> np.ndarray:
    """Sample batch (N, C, H, W) at float positions src_y, src_x (N, H', W') -> float32
    (N, C, H', W'): each value is the distance-weighted mean of the 4 nearest pixels.
    Positions are clamped to the image, so the border pixels extend outwards."""
    n, c, h, w = batch.shape
    src_y = np.clip(np.asarray(src_y, np.float32), 0, h - 1)
    src_x = np.clip(np.asarray(src_x, np.float32), 0, w - 1)
    # The top-left neighbour. Capped at h-2 / w-2 so that its right and lower neighbours
    # exist; on the last row/column the weight then goes fully to them (wy or wx = 1).
    # (Kept in float32 until the index is made: float32 weights against float32 pixels
    # run several times faster than the float64 that mixing in integers would give.)
    y0 = np.minimum(np.floor(src_y), h - 2)
    x0 = np.minimum(np.floor(src_x), w - 2)
    wy = (src_y - y0)[:, None]  # (N, 1, H', W'): the same weights for every channel
    wx = (src_x - x0)[:, None]
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)

    # Gather from the whole batch as one flat array: image i, channel k, pixel (y, x) sits at
    # (i * C + k) * H * W + y * W + x. One np.take per neighbour, no loop over images.
    image_start = (np.arange(n)[:, None, None] * c + np.arange(c)[None, :, None]) * (h * w)
    top_left = image_start + (y0 * w + x0).reshape(n, 1, -1)  # (N, C, H'*W')
    flat = np.ascontiguousarray(batch, dtype=np.float32).ravel()

    def at(offset):  # the neighbour `offset` flat positions after the top-left one
        return flat.take(top_left + offset).reshape(n, c, *src_y.shape[1:])

    tl, tr, bl, br = at(0), at(1), at(w), at(w + 1)  # top-left, top-right, bottom-left, -right
    # Interpolate along x on the upper and lower rows, then along y. (Written as
    # a * (1 - t) + b * t rather than a + t * (b - a): exact at t = 0 and t = 1, so an
    # identity transform or a whole-pixel shift copies pixels unchanged.)
    top = tl * (1 - wx) + tr * wx
    bottom = bl * (1 - wx) + br * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32, copy=False)


def random_erase(batch, rng, prob, area, value=0.0) -> np.ndarray:
    """Set one random rectangle of each chosen image (chosen with probability `prob`) to
    `value`. The rectangle covers a uniform `area` fraction of the image with an aspect ratio
    between 1:2 and 2:1. batch (N, C, H, W) -> new float32 (N, C, H, W)."""
    n, _, h, w = batch.shape
    chosen = rng.random(n) < prob
    fraction = rng.uniform(area[0], area[1], n)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))  # log-uniform: 1:2 as likely as 2:1
    eh = np.clip(np.sqrt(fraction * h * w * aspect), 1, h).astype(int)
    ew = np.clip(np.sqrt(fraction * h * w / aspect), 1, w).astype(int)
    top = (rng.random(n) * (h - eh + 1)).astype(int)
    left = (rng.random(n) * (w - ew + 1)).astype(int)
    # A per-image rectangle mask built by broadcasting (N, H, 1) against (N, 1, W)
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
    mask = inside & chosen[:, None, None]
    return np.where(mask[:, None], np.float32(value), batch).astype(np.float32, copy=False)


# -- test-time augmentation --------------------------------------------------------------------
def flip_tta(batch) -> np.ndarray:
    """The two views averaged by --tta flip: (2, N, C, H, W) = the images and their mirror
    images. The model's probabilities are averaged over the views."""
    return np.stack([batch, batch[..., ::-1]])


def ten_crop(batch, size=44) -> np.ndarray:
    """The ten views averaged by --tta tencrop: (10, N, C, H, W).

    The classic ten-crop takes five size x size crops (the four corners and the centre) and
    their mirror images. Our models take 48x48 inputs, so instead of cropping and resizing
    back up (which would also zoom the face by 48/44) each "crop" is the image shifted by
    (48 - size) / 2 = 2 pixels towards one corner, with the edge pixels repeated: the same
    picture as the corner crop placed back in the centre of a 48x48 frame, at the scale the
    model was trained on. The centre view is the image itself.
    """
    n, c, h, w = batch.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size must be in 1..{min(h, w)}, got {size}")
    s = (min(h, w) - size) // 2
    padded = np.pad(batch, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")
    # Offsets into the padded image: centre, then the corner crops top-left, top-right,
    # bottom-left, bottom-right (the top-left crop, re-centred, appears shifted down-right).
    offsets = [(s, s), (0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s)]
    views = [padded[:, :, dy : dy + h, dx : dx + w] for dy, dx in offsets]
    return np.stack(views + [v[..., ::-1] for v in views])
