"""The 68-point iBUG 300-W face landmarks: groups, the mirror permutation, and helpers.

This is the order dlib, face-api.js and OpenFace use (Sagonas et al., "300 Faces in-the-Wild
Challenge", 2013). "Right" is the subject's right, which is the image's left in a photo that
is not mirrored (as dlib has it):

    JAW          0-16   from the image-left ear, round the chin (8), to the image-right ear
    RIGHT_BROW  17-21   outer end to inner end
    LEFT_BROW   22-26   inner end to outer end
    NOSE_BRIDGE 27-30   top (between the eyes) to the tip
    NOSE_BASE   31-35   image-left nostril wing to image-right one, 33 under the tip
    RIGHT_EYE   36-41   36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid
    LEFT_EYE    42-47   42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid
    MOUTH       48-67   outer lip 48-59 (48 and 54 the corners), inner lip 60-67

Points are arrays of shape (..., 68, 2) holding (x, y) in image pixels. Pure NumPy: the
landmark teacher runs this module inside MediaPipe's own virtual environment, where none of
the project's other dependencies exist.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 68

JAW = range(0, 17)
RIGHT_BROW = range(17, 22)
LEFT_BROW = range(22, 27)
NOSE_BRIDGE = range(27, 31)
NOSE_BASE = range(31, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
MOUTH = range(48, 68)
OUTER_LIP = range(48, 60)
INNER_LIP = range(60, 68)

GROUPS = {
    "jaw": JAW, "right_brow": RIGHT_BROW, "left_brow": LEFT_BROW,
    "nose_bridge": NOSE_BRIDGE, "nose_base": NOSE_BASE,
    "right_eye": RIGHT_EYE, "left_eye": LEFT_EYE, "mouth": MOUTH,
}

# Outer eye corners: their distance normalises the point error (the 300-W "NME").
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 36, 45


def _mirror_pairs() -> np.ndarray:
    """FLIP[i] = the point that lands on index i when the image is mirrored left to right."""
    flip = np.arange(N_POINTS)

    def swap(a, b):
        flip[a], flip[b] = b, a

    for i in range(8):                      # jaw: 0 <-> 16 ... 7 <-> 9, the chin 8 stays
        swap(i, 16 - i)
    for i in range(5):                      # brows: 17 <-> 26 ... 21 <-> 22
        swap(17 + i, 26 - i)
    swap(31, 35)                            # nostril wings; the bridge and 33 stay
    swap(32, 34)
    # An eye mirrors onto the other one with its corners kept: outer to outer, upper lid
    # to upper lid, read in the opposite direction round the eye.
    for a, b in ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)):
        swap(a, b)
    for a, b in ((48, 54), (49, 53), (50, 52), (55, 59), (56, 58),   # outer lip; 51, 57 stay
                 (60, 64), (61, 63), (65, 67)):                       # inner lip; 62, 66 stay
        swap(a, b)
    return flip


FLIP = _mirror_pairs()
FLIP.setflags(write=False)


def flip_points(points: np.ndarray, width: float) -> np.ndarray:
    """The points of the mirrored image (width `width` px): x -> width - x, then permuted.

    Pixel coordinates here are continuous with pixel centres at i + 0.5 (OpenCV's resize
    convention), so the mirror of x is width - x and flipping twice is the identity.
    """
    points = np.asarray(points)
    mirrored = points[..., FLIP, :].copy()
    mirrored[..., 0] = width - mirrored[..., 0]
    return mirrored


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right eye centre, left eye centre), each (..., 2): the mean of the eye's six points."""
    points = np.asarray(points)
    return (points[..., RIGHT_EYE, :].mean(axis=-2), points[..., LEFT_EYE, :].mean(axis=-2))


def interocular(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (36, 45), shape (...): the 300-W normaliser."""
    points = np.asarray(points)
    return np.linalg.norm(points[..., LEFT_EYE_OUTER, :] - points[..., RIGHT_EYE_OUTER, :],
                          axis=-1)


def _box(points: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def part_boxes(points: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """The eye, eyebrow and mouth boxes (x, y, w, h) of one face's (68, 2) points.

    Each box is the tight bounds of its group: the front ends pad them as they need.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (N_POINTS, 2):
        raise ValueError(f"part_boxes takes one face's (68, 2) points, got {points.shape}")
    return {name: _box(points[group]) for name, group in (
        ("right_eye", RIGHT_EYE), ("left_eye", LEFT_EYE),
        ("right_brow", RIGHT_BROW), ("left_brow", LEFT_BROW), ("mouth", MOUTH))}
