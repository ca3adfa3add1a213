"""Data augmentation for training and test-time augmentation (TTA), vectorized over the batch.

Each training image gets its own random affine transform (shift, small rotation and zoom,
horizontal flip), applied to the whole batch at once by building every sample's sampling grid
with NumPy and reading pixels with bilinear interpolation, then random erasing. All
randomness comes from the Generator passed in, so the same seed gives the same batch.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Augmenter:
    """Random geometric + erasing augmentation of (N, 1, H, W) float32 batches.

    shift:          max translation in pixels (each axis)
    rotate_degrees: max rotation either way
    zoom:           max relative scale change either way
    flip:           mirror half of the images left-right (faces are nearly symmetric)
    erase_prob:     probability of blanking one random rectangle (occlusion robustness)
    """

    shift: float = 4.0
    rotate_degrees: float = 10.0
    zoom: float = 0.1
    flip: bool = True
    erase_prob: float = 0.25
    erase_area: tuple = (0.02, 0.15)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, _, h, w = batch.shape
        angle = np.deg2rad(rng.uniform(-self.rotate_degrees, self.rotate_degrees, n))
        scale = rng.uniform(1 - self.zoom, 1 + self.zoom, n)
        shift = rng.uniform(-self.shift, self.shift, (n, 2))
        mirror = rng.random(n) < 0.5 if self.flip else np.zeros(n, bool)
        out = affine(batch, angle, scale, shift, mirror)
        if self.erase_prob > 0:
            out = random_erase(out, rng, self.erase_prob, self.erase_area)
        return out


def affine(batch, angle, scale, shift, mirror):
    """Rotate by `angle` (radians) and zoom by `scale` about the centre, mirror where asked,
    then shift (pixels, (dy, dx)): one transform per image, all images at once.

    For every output pixel we compute where it comes from in the input (the inverse map) and
    interpolate there; out-of-image positions take the nearest edge pixel.
    """
    n, c, h, w = batch.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                         indexing="ij")
    # Output coordinates relative to the centre, minus the shift: (N, H, W)
    y = ys[None] - cy - shift[:, 0, None, None]
    x = xs[None] - cx - shift[:, 1, None, None]
    cos = (np.cos(angle) / scale)[:, None, None]
    sin = (np.sin(angle) / scale)[:, None, None]
    src_y = cos * y - sin * x + cy
    src_x = sin * y + cos * x
    src_x = np.where(mirror[:, None, None], -src_x, src_x) + cx
    return bilinear(batch, src_y.astype(np.float32), src_x.astype(np.float32))


def bilinear(batch, src_y, src_x):
    """Sample batch (N, C, H, W) at float positions (N, H', W') with bilinear weights."""
    n, c, h, w = batch.shape
    src_y = np.clip(src_y, 0, h - 1)
    src_x = np.clip(src_x, 0, w - 1)
    y0 = np.minimum(np.floor(src_y).astype(np.int64), h - 2)
    x0 = np.minimum(np.floor(src_x).astype(np.int64), w - 2)
    wy = (src_y - y0)[:, None]
    wx = (src_x - x0)[:, None]
    index = np.arange(n)[:, None, None]
    flat = batch.transpose(0, 2, 3, 1)  # gather (N, H', W', C), then back to channels first

    def at(yy, xx):
        return flat[index, yy, xx].transpose(0, 3, 1, 2)

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def random_erase(batch, rng, prob, area):
    """Set one random rectangle of each chosen image to 0 (the mean after normalization)."""
    n, _, h, w = batch.shape
    chosen = rng.random(n) < prob
    fraction = rng.uniform(area[0], area[1], n)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
    eh = np.clip(np.sqrt(fraction * h * w * aspect), 1, h).astype(int)
    ew = np.clip(np.sqrt(fraction * h * w / aspect), 1, w).astype(int)
    top = (rng.random(n) * (h - eh + 1)).astype(int)
    left = (rng.random(n) * (w - ew + 1)).astype(int)
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
    mask = inside & chosen[:, None, None]
    return np.where(mask[:, None], np.float32(0), batch).astype(np.float32)


def flip_tta(batch):
    """The two views averaged by --tta flip: the images and their mirror images."""
    return [batch, np.ascontiguousarray(batch[..., ::-1])]


def ten_crop(batch, shift=2):
    """The ten views averaged by --tta tencrop: the image shifted to the four corners by
    `shift` pixels, the centre, and the mirror image of each. Shifting with edge padding
    (instead of cropping 44x44 and resizing) keeps the 48x48 input the network expects."""
    n, c, h, w = batch.shape
    padded = np.pad(batch, ((0, 0), (0, 0), (shift, shift), (shift, shift)), mode="edge")
    offsets = [(shift, shift), (0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift)]
    views = [np.ascontiguousarray(padded[:, :, dy : dy + h, dx : dx + w]) for dy, dx in offsets]
    return views + [np.ascontiguousarray(v[..., ::-1]) for v in views]
