"""Crops that are not a well-framed face: the negatives of the presence head.

A video follows a face by its own landmarks (emotion.video.follow): the crop of the next
frame is placed where this frame's points say the face is. That works while the crop holds
the face; it fails silently when the crop slides off the face (a fast turn, the face
leaving), or when the track began on a false box of the detector (a pattern on a jumper).
The network must say so itself: FaceNet's presence head answers "is this a face, framed
as the detector frames one?", and a track whose answer stays low is dropped.

Positives are the training faces as augmented for the other heads: FER2013's crops with
small shifts, zooms and rotations, the framing a tracked face has. The extra crops are made
from the same images, five kinds in equal shares, so that the network cannot tell a
negative by anything but where the face is (the mosaic's seams appear in the fifth kind,
a positive, too):

    aside     a mosaic of training images, cut with a 48x48 window whose centre is at least
              MIN_OFFSET of a crop away from every face's centre: half of one face and half
              of another, what a crop between two people or a drifted one shows
    wide      the mosaic taken in ZOOM_OUT times wider, centred where four faces meet: four
              small faces, none of them framed
    close     a window of 1/ZOOM_IN of an image blown up to 48x48, off the centre: an eye,
              a cheek, hair or the background of a corner, what a crop too close shows
    texture   smooth random texture (noise blurred at a random scale, with a random
              gradient): the non-faces a detector fires on, which FER2013 has none of
    framed    a positive: the mosaic cut around one face, up to FRAMED_OFFSET off its centre
              and up to FRAMED_ZOOM wider, so that the neighbours' edges show at the border

All of it works on preprocessed (N, 1, 48, 48) batches with the Generator passed in, like
augment.py (one seed, one batch), and reuses its resampler (augment.bilinear).
"""

from __future__ import annotations

import numpy as np

from emotion.training.augment import bilinear

MIN_OFFSET = 0.4  # of a crop width: a window this far off the face's centre shows no framed face
ZOOM_OUT = 2.0    # the "wide" crops take in a 96x96 mosaic
ZOOM_IN = 2.5     # the "close" crops take in 48 / 2.5 = 19 pixels of the image
FRAMED_OFFSET = 0.08  # of a crop width, on each axis
FRAMED_ZOOM = 1.3
KINDS = ("aside", "wide", "close", "texture", "framed")


def presence_crops(images: np.ndarray, count: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` crops made from `images` (N, 1, H, W) float32 (preprocessed training images),
    the kinds of the module docstring in turn: (crops (count, 1, H, W) float32, targets
    (count,) float32: 1 for "framed", 0 for the rest).

    Each crop is cut from a 3x3 mosaic of nine images drawn at random, the face of the
    middle one at (1.5 H, 1.5 W): every window stays inside the mosaic, so no border is
    smeared into a crop (a cue a network would learn instead of the face's place)."""
    n, c, h, w = images.shape
    kind = np.arange(count) % len(KINDS)
    picks = rng.integers(0, n, (count, 3, 3))
    mosaic = np.concatenate([np.concatenate([images[picks[:, r, k]] for k in range(3)], axis=3)
                             for r in range(3)], axis=2)  # (count, C, 3H, 3W)
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                         indexing="ij")
    # The window of each crop: its centre (continuous mosaic pixels) and its size in crops.
    centre = np.empty((count, 2), np.float32)
    scale = np.ones(count, np.float32)
    middle = np.array([1.5 * h, 1.5 * w], np.float32)
    for i in range(count):
        name = KINDS[kind[i]]
        if name == "aside":
            centre[i] = _away_from_faces(rng, h, w)
        elif name == "wide":  # the corner where four faces meet, taken in twice as wide
            centre[i], scale[i] = [h, w], ZOOM_OUT
        elif name == "close":
            angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.45)
            centre[i] = middle + radius * np.array([h * np.sin(angle), w * np.cos(angle)])
            scale[i] = 1 / ZOOM_IN
        elif name == "framed":
            centre[i] = middle + rng.uniform(-FRAMED_OFFSET, FRAMED_OFFSET, 2) * [h, w]
            scale[i] = rng.uniform(1.0, FRAMED_ZOOM)
        # "texture" is drawn below; its window does not matter
    # Output pixel (y, x) reads the mosaic at centre + (its offset from the crop's centre)
    # * scale, in pixel-centre (index) coordinates: continuous minus 0.5.
    src_y = centre[:, 0, None, None] + (ys - (h - 1) / 2) * scale[:, None, None] - 0.5
    src_x = centre[:, 1, None, None] + (xs - (w - 1) / 2) * scale[:, None, None] - 0.5
    out = bilinear(mosaic, src_y, src_x)
    is_texture = kind == KINDS.index("texture")
    out[is_texture] = textures(int(is_texture.sum()), c, h, w, rng)
    targets = (kind == KINDS.index("framed")).astype(np.float32)
    return out.astype(np.float32, copy=False), targets


def _away_from_faces(rng, h, w) -> np.ndarray:
    """A window centre (y, x) in the middle image of the 3x3 mosaic at least MIN_OFFSET of
    a crop away, on one axis or the other, from every one of the nine faces' centres."""
    faces = np.array([[(r + 0.5) * h, (k + 0.5) * w] for r in range(3) for k in range(3)],
                     np.float32)
    while True:  # rejection sampling: about a third of the draws are kept
        centre = rng.uniform([h, w], [2 * h, 2 * w]).astype(np.float32)
        d = np.abs(faces - centre) / [h, w]
        if np.all(np.max(d, axis=1) >= MIN_OFFSET):
            return centre


def textures(count, c, h, w, rng) -> np.ndarray:
    """Smooth random textures (count, C, H, W), zero mean and unit spread like a
    preprocessed image: white noise on a coarse grid of 3 to 24 cells a side, resampled
    bilinearly to H x W, plus a linear gradient of random direction and strength."""
    out = np.empty((count, c, h, w), np.float32)
    ys, xs = np.meshgrid(np.linspace(-1, 1, h, dtype=np.float32),
                         np.linspace(-1, 1, w, dtype=np.float32), indexing="ij")
    for i in range(count):
        cells = int(rng.integers(3, 25))
        coarse = rng.standard_normal((1, c, cells, cells)).astype(np.float32)
        grid_y = np.broadcast_to(np.linspace(0, cells - 1, h, dtype=np.float32)[:, None], (h, w))
        grid_x = np.broadcast_to(np.linspace(0, cells - 1, w, dtype=np.float32)[None], (h, w))
        smooth = bilinear(coarse, grid_y[None], grid_x[None])[0]
        slope = rng.standard_normal(2).astype(np.float32)
        image = smooth + slope[0] * ys + slope[1] * xs
        out[i] = (image - image.mean()) / max(float(image.std()), 1e-3)
    return out
