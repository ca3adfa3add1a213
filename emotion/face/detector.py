"""Face detection with OpenCV's Haar cascades, face parts (eyes, eyebrows, mouth), alignment
and crops.

A Haar cascade is a fixed, pre-trained detector: it slides a 24x24 window over an image
pyramid and keeps the windows that pass every stage of boosted rectangle-feature tests.
Its cost grows with the number of pixels and pyramid levels, so we detect on a downscaled
copy of the frame and map the boxes back to full resolution.

Boxes are `(x, y, w, h)` tuples of ints in full-frame pixel coordinates throughout.

Two tuned presets, because stills and live video want different trade-offs:

- `PHOTO_CONFIG` (the default): group photos have small faces (the six people in
  `group_selfie.jpg` are ~100 px wide in a 2048 px frame), so we keep 640 px on the longest
  side and a fine pyramid (`scale_factor=1.05`). Measured on the shared test photos it finds
  exactly 6 / 2 / 1 faces in group_selfie / two_faces / single_face (640 and 720 px both
  give that; 560 px loses the man in the cap, 800+ px adds false faces on clothing).
- `VIDEO_CONFIG`: the full-frame scan of the video pipeline, which runs every few frames
  only (between scans each face is followed by its landmarks: emotion.video.follow). It keeps
  640 px and looks for faces down to 5% of the short side (36 px in 720p: a group on camera,
  or someone 4 m from a webcam) with a coarser pyramid (1.1) than photos. The measurements
  that chose it, on every shared clip, are in benchmarks/RESULTS.md ("Video detection").
- `detect_near`: a face looked for near a box (a worker scan's box, a few frames old when
  the video pipeline uses it): twice the box, scaled so the face is ~48 px, at sizes
  0.75-1.35x the box: a few pyramid levels on a few thousand pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from emotion.errors import UserError

Box = tuple[int, int, int, int]

FACE_CASCADE = "haarcascade_frontalface_default.xml"
# The eyeglasses variant also fires on eyes behind glasses (most faces in our photos).
EYE_CASCADE = "haarcascade_eye_tree_eyeglasses.xml"
SMILE_CASCADE = "haarcascade_smile.xml"


def load_cascade(name_or_path: str) -> cv2.CascadeClassifier:
    """Load a Haar cascade by file name (looked up in cv2.data.haarcascades) or by path.

    OpenCV does not raise on a bad file: it returns an *empty* classifier that later fails
    deep inside detectMultiScale. We check `empty()` here so the user sees which file is wrong.
    """
    path = name_or_path
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(cv2.data.haarcascades, name_or_path)
    if not os.path.isfile(path):
        raise UserError(f"Haar cascade file not found: {path} (OpenCV 4's opencv-python ships "
                        f"them in cv2.data.haarcascades; reinstall opencv-python<5)")
    cascade = cv2.CascadeClassifier()
    try:
        loaded = cascade.load(path)
    except cv2.error:
        loaded = False
    if not loaded or cascade.empty():
        raise UserError(f"could not load Haar cascade {path}: the file is not a valid cascade XML")
    return cascade


@dataclass(frozen=True)
class DetectorConfig:
    """How the face cascade is run. See the module docstring for how the presets were tuned."""

    max_side: int = 640          # downscale so the longest side is at most this (never upscale)
    scale_factor: float = 1.05   # pyramid step: smaller = more scales = slower, finds more faces
    min_neighbors: int = 5       # overlapping hits a face needs: higher = fewer false faces
    min_size_frac: float = 0.04  # smallest face, as a fraction of the image's short side
    min_size_px: int = 20        # ... and never below this (the cascade's window is 24 px)
    equalize: bool = True        # histogram equalisation: evens out dim or backlit faces
    # A box covering more than this fraction of its area with a larger box is a duplicate
    # (the cascade often fires twice on one face: the whole face and the mouth/chin area).
    max_overlap: float = 0.4


PHOTO_CONFIG = DetectorConfig()
VIDEO_CONFIG = DetectorConfig(max_side=640, scale_factor=1.1, min_size_frac=0.05, min_neighbors=4)

# The window search of `detect_near` (see the module docstring).
NEAR_WINDOW = 0.5      # the box grown by half its size on every side: twice its width
NEAR_FACE_PX = 48      # the window is scaled so that a face of the box's size is this wide
NEAR_MIN_NEIGHBORS = 3  # fewer than the scan's: the window is known to have held a face
# Face sizes looked for, relative to the box. 0.75-1.35 instead of 0.7-1.5 (2026-12-06, 2-vCPU
# AMD EPYC Zen 3, `python -m benchmarks.video_detection --near-sizes 0.7,1.5 0.75,1.35`, every
# shared clip, on the window-search pipeline that the landmark-following one replaced on
# 2026-12-08; the benchmark went with it, benchmarks/RESULTS.md keeps its figures):
# the same faces in every frame and the same IDs, for 13% less detection time on group_pan
# (17.7-17.9 ms/frame in two runs -> 15.4); 0.8-1.25 gave woman_smiling_phone a second ID
# and a false face in 11 frames.
NEAR_SIZES = (0.75, 1.35)


def downscale(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink `gray` so its longest side is <= max_side; return (image, scale applied)."""
    h, w = gray.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return gray, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages the pixels it drops: no aliasing, which Haar features are sensitive to.
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


def overlap_fraction(small: Box, large: Box) -> float:
    """Fraction of `small`'s area that lies inside `large`."""
    x, y, w, h = small
    X, Y, W, H = large
    ix = max(0, min(x + w, X + W) - max(x, X))
    iy = max(0, min(y + h, Y + H) - max(y, Y))
    return ix * iy / max(1, w * h)


def drop_duplicates(boxes: list[Box], max_overlap: float) -> list[Box]:
    """Keep the larger of two boxes when one mostly covers the other (a cheap form of NMS)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(overlap_fraction(box, k) <= max_overlap for k in kept):
            kept.append(box)
    return kept


def new_faces(scanned: list[Box], found: list[Box], max_overlap: float) -> list[Box]:
    """The scanned boxes that no box found this frame covers, nor covers: the faces the
    tracks do not have yet. A scanned box of a tracked face is lag frames old, so it is left
    to the window search, which saw the face where it is now."""
    return [s for s in scanned
            if all(overlap_fraction(s, f) <= max_overlap and overlap_fraction(f, s) <= max_overlap
                   for f in found)]


class FaceDetector:
    """Find all frontal faces in a gray uint8 image: `detect(gray) -> [(x, y, w, h), ...]`."""

    def __init__(self, config: DetectorConfig = PHOTO_CONFIG, cascade: str = FACE_CASCADE):
        self.config, self.cascade_name = config, cascade
        self.cascade = load_cascade(cascade)

    def clone(self) -> "FaceDetector":
        """The same detector with a cascade of its own, for another thread: one OpenCV
        CascadeClassifier must not be used by two threads at once."""
        return type(self)(self.config, self.cascade_name)

    def detect(self, gray: np.ndarray) -> list[Box]:
        cfg = self.config
        small, scale = downscale(gray, cfg.max_side)
        min_side = max(cfg.min_size_px, int(cfg.min_size_frac * min(small.shape[:2])))
        if min(small.shape[:2]) < min_side:
            return []  # a tiny image cannot hold a face the cascade could see
        if cfg.equalize:
            small = cv2.equalizeHist(small)
        found = self.cascade.detectMultiScale(
            small, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
            minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in found]
        boxes = drop_duplicates(boxes, cfg.max_overlap)
        # Left to right, so faces in a photo are numbered in reading order.
        return sorted(boxes, key=lambda b: (b[0], b[1]))

    def detect_near(self, gray: np.ndarray, box: Box, grow: float = NEAR_WINDOW) -> list[Box]:
        """The face near `box` (where a face was): [] or one box, in frame pixels.

        Only a window around the box is searched (the box grown by `grow` of its size on
        every side: twice its width by default), scaled so that a face of the box's size is
        NEAR_FACE_PX wide, and only for faces of NEAR_SIZES times that: a handful of pyramid
        levels over a few thousand pixels, instead of every size over the frame.
        """
        cfg = self.config
        x, y, w, h = expand_box(box, grow, gray.shape)
        if w < 8 or h < 8:
            return []
        scale = min(1.0, NEAR_FACE_PX / max(1, box[2]))  # never upscale: a small face stays
        window = gray[y:y + h, x:x + w]
        if scale < 1.0:
            window = cv2.resize(window, (max(1, round(w * scale)), max(1, round(h * scale))),
                                interpolation=cv2.INTER_AREA)
        if cfg.equalize:
            window = cv2.equalizeHist(window)
        face = box[2] * scale
        low = max(cfg.min_size_px, int(NEAR_SIZES[0] * face))
        high = max(low + 1, int(NEAR_SIZES[1] * face))
        if min(window.shape[:2]) < low:
            return []
        found = self.cascade.detectMultiScale(window, scaleFactor=cfg.scale_factor,
                                              minNeighbors=NEAR_MIN_NEIGHBORS,
                                              minSize=(low, low), maxSize=(high, high))
        if len(found) == 0:
            return []
        # The hit closest to where the face was (a neighbour's face may enter the window).
        cx, cy = (box_center(box)[0] - x) * scale, (box_center(box)[1] - y) * scale
        bx, by, bw, bh = min(found, key=lambda b: (b[0] + b[2] / 2 - cx) ** 2
                             + (b[1] + b[3] / 2 - cy) ** 2)
        return [(x + int(round(bx / scale)), y + int(round(by / scale)),
                 int(round(bw / scale)), int(round(bh / scale)))]


# ---------------------------------------------------------------------------------------
# Face parts: eyes in the upper half, the eyebrow above each eye, the mouth in the lower
# half, and the head roll angle (the rest of the head pose: emotion/face/pose.py).
# ---------------------------------------------------------------------------------------

@dataclass
class FaceParts:
    """What we found inside one face box, in frame pixels (all optional: a cascade, or the
    eyebrow profile, may find nothing, and a missing part stays missing: never a guess)."""

    eyes: list[Box] = field(default_factory=list)  # 0 or 2 boxes, image-left eye first
    mouth: Box | None = None
    roll: float | None = None  # degrees; > 0 when the eye line slopes down to the right
    eyebrows: list[Box | None] = field(default_factory=list)  # one per eye, None where none
    eyebrow_raise: float | None = None  # mean eyebrow-to-eye distance / face height


def box_center(box: Box) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2.0, y + h / 2.0


def roll_angle(eyes: list[Box]) -> float | None:
    """Head roll from the line through the two eye centres, in degrees (None without 2 eyes).

    Image y grows downwards, so a positive angle means the image-right eye is lower: the head
    is tilted clockwise as seen on screen.
    """
    if len(eyes) != 2:
        return None
    (x1, y1), (x2, y2) = sorted(box_center(e) for e in eyes)
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


class PartsDetector:
    """Eyes and mouth inside a face box, each found on a small fixed-size copy of the region.

    Working at a fixed width (`region_width` px) makes the cost independent of face size and
    the cascades' size limits meaningful for every face.
    """

    def __init__(self, eye_cascade: str = EYE_CASCADE, smile_cascade: str | None = SMILE_CASCADE,
                 region_width: int = 128, max_roll: float = 30.0):
        self.eye_cascade = load_cascade(eye_cascade)
        self.smile_cascade = load_cascade(smile_cascade) if smile_cascade else None
        self.region_width = region_width
        self.max_roll = max_roll  # steeper eye lines are almost always a false eye

    def _search(self, cascade, gray, region: Box, min_neighbors: int, min_frac: float):
        """Run `cascade` on `region` of `gray` resized to region_width; boxes in frame coords."""
        x, y, w, h = region
        patch = gray[y:y + h, x:x + w]
        if patch.size == 0:
            return []
        scale = self.region_width / w
        patch = cv2.resize(patch, (self.region_width, max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
        min_side = max(8, int(min_frac * self.region_width))
        found = cascade.detectMultiScale(patch, scaleFactor=1.1, minNeighbors=min_neighbors,
                                         minSize=(min_side, min_side))
        return [(x + round(bx / scale), y + round(by / scale), round(bw / scale), round(bh / scale))
                for bx, by, bw, bh in found]

    def find_eyes(self, gray: np.ndarray, box: Box) -> list[Box]:
        """Two eyes, one in each half of the face's upper part, or [] if no plausible pair."""
        x, y, w, h = clip_box(box, gray.shape)
        # Eyes sit at ~40% of the face height; the upper 55% leaves room for a tilted head.
        candidates = self._search(self.eye_cascade, gray, (x, y, w, int(h * 0.55)),
                                  min_neighbors=2, min_frac=0.12)
        mid = x + w / 2.0
        left = [e for e in candidates if box_center(e)[0] < mid]
        right = [e for e in candidates if box_center(e)[0] >= mid]
        if not left or not right:
            return []
        # Among the candidates keep the largest on each side: small hits are usually
        # eyebrows, nostrils or glasses frames.
        pair = [max(left, key=lambda e: e[2] * e[3]), max(right, key=lambda e: e[2] * e[3])]
        if abs(roll_angle(pair)) > self.max_roll:
            return []
        return pair

    def find_mouth(self, gray: np.ndarray, box: Box) -> Box | None:
        """The largest smile-cascade hit in the lower 40% of the face, or None.

        The smile cascade fires on any mouth-like dark bar, open or closed, so it locates the
        mouth rather than deciding whether the person smiles: that is the CNN's job.
        """
        if self.smile_cascade is None:
            return None
        x, y, w, h = clip_box(box, gray.shape)
        top = y + int(h * 0.6)
        found = self._search(self.smile_cascade, gray, (x, top, w, y + h - top),
                             min_neighbors=15, min_frac=0.25)
        return max(found, key=lambda m: m[2] * m[3]) if found else None

    def find(self, gray: np.ndarray, box: Box, mouth: bool = True) -> FaceParts:
        """Every part of the face in `box`; `mouth=False` skips the smile cascade."""
        eyes = self.find_eyes(gray, box)
        brows = [find_eyebrow(gray, eye) for eye in eyes]
        return FaceParts(eyes=eyes, mouth=self.find_mouth(gray, box) if mouth else None,
                         roll=roll_angle(eyes), eyebrows=brows,
                         eyebrow_raise=eyebrow_raise(eyes, brows, box))


# ---------------------------------------------------------------------------------------
# Eyebrows: no cascade ships for them, but an eyebrow is the dark horizontal band between
# the bright forehead and the bright upper lid, so one vertical intensity profile finds it.
# ---------------------------------------------------------------------------------------

# The window above an eye box that is searched, in eye-box heights from its top edge: the
# brow lies from 0.8 above the top to just inside it in the shared photos and clips (the
# Haar eye box covers the eye and the lid, and sometimes the brow's lower edge). The brow
# is looked for down to BROW_LOWEST; the rows below it, down to BROW_BELOW, are only the
# bright lid that a band needs under it (further down come the dark lashes).
BROW_ABOVE, BROW_LOWEST, BROW_BELOW = 1.0, 0.15, 0.35
# A band counts when its darkest row is darker than the brightest rows above it and below
# it (the lower of the two) by this fraction of them (Weber contrast) and by this many gray
# levels. How they were chosen: see find_eyebrow.
BROW_CONTRAST, BROW_DEPTH = 0.06, 6.0


def find_eyebrow(gray: np.ndarray, eye: Box) -> Box | None:
    """The eyebrow above `eye` as a box (frame pixels), or None when there is no clear band.

    The window spans the eye box's middle 80% across and from BROW_ABOVE eye-box heights
    above its top edge to BROW_BELOW below it. Its rows' mean intensities form a profile whose darkest
    row must have brighter rows on both sides: forehead above, lid below. Its depth, the
    lower of the two bright sides minus the dark row, over that side (Weber contrast, so
    lighting does not matter), must reach BROW_CONTRAST, and BROW_DEPTH gray levels (a
    dark patch's noise makes large Weber contrasts of a few levels). The band's rows are
    those darker than half the depth around the minimum; the box spans the eye box's width.

    The thresholds: the 9 eyes of the shared photos' frontal faces have contrasts of
    0.11-0.44 (one, behind glasses in two_faces.jpg, 0.015: no brow there); group_pan's
    eyes 0.08 and up (1st percentile); woman_talking's faint blond brows 0.06 at the median,
    half of them with no band at all (the eye box's top cuts through them). A uniform patch
    gives 0, and uniform patches with pixel noise up to sigma 15 stay under 5.4 levels deep.
    A glasses frame above the eye is a dark band too, and is found in place of the brow
    when it is darker (two of the shared photos' faces).
    """
    band, depth, bright = eyebrow_band(gray, eye)
    if band is None or depth < BROW_DEPTH or depth < BROW_CONTRAST * bright:
        return None
    top, bottom = band
    return eye[0], top, eye[2], bottom - top


def eyebrow_band(gray: np.ndarray, eye: Box) -> tuple[tuple[int, int] | None, float, float]:
    """((top, bottom) frame rows of the darkest band above `eye`, its depth, the brightness
    it is measured against), or (None, 0, 0) when the darkest row is on the search's edge:
    see find_eyebrow."""
    ex, ey, ew, eh = eye
    top = max(0, int(round(ey - BROW_ABOVE * eh)))
    bottom = min(gray.shape[0], int(round(ey + BROW_BELOW * eh)))
    left = max(0, int(round(ex + 0.1 * ew)))
    right = min(gray.shape[1], int(round(ex + 0.9 * ew)))
    if bottom - top < 5 or right - left < 3:
        return None, 0.0, 0.0
    profile = gray[top:bottom, left:right].mean(axis=1, dtype=np.float32)
    # Smooth over ~1/10 of the eye height: skin texture and single hairs are not a band.
    k = max(1, int(eh / 10)) | 1
    profile = np.convolve(np.pad(profile, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    lowest = min(len(profile) - 2, int(round(ey + BROW_LOWEST * eh)) - top)
    if lowest < 2:
        return None, 0.0, 0.0
    i = int(np.argmin(profile[:lowest + 1]))
    if i == 0 or i == lowest:
        return None, 0.0, 0.0  # darkest on the search's edge: no band inside the window
    bright = min(float(profile[:i].max()), float(profile[i + 1:].max()))
    depth = bright - float(profile[i])
    if bright <= 0 or depth <= 0:
        return None, 0.0, 0.0
    dark = profile < profile[i] + depth / 2
    a = b = i
    while a > 0 and dark[a - 1]:
        a -= 1
    while b < len(profile) - 1 and dark[b + 1]:
        b += 1
    return (top + a, top + b + 1), depth, bright


def eyebrow_raise(eyes: list[Box], eyebrows: list[Box | None], face: Box) -> float | None:
    """Mean distance from each found eyebrow's centre to its eye's centre over the face
    height: brows go up in surprise and fear. None when no eyebrow was found."""
    distances = [math.dist(box_center(eye), box_center(brow))
                 for eye, brow in zip(eyes, eyebrows) if brow is not None]
    if not distances or face[3] <= 0:
        return None
    return sum(distances) / len(distances) / face[3]


# ---------------------------------------------------------------------------------------
# Crops for the classifier.
# ---------------------------------------------------------------------------------------

def clip_box(box: Box, shape) -> Box:
    """Intersect a box with the image; the result may have zero width/height."""
    H, W = shape[:2]
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(W, x + w), min(H, y + h)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def expand_box(box: Box, margin: float, shape) -> Box:
    """Grow a box by `margin` of its size on every side, clipped to the image.

    FER2013 faces are cropped a little loosely (forehead and chin included), so a margin of
    10-20% makes our crops look more like the training images.
    """
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    return clip_box((x - dx, y - dy, w + 2 * dx, h + 2 * dy), shape)


def crop_face(gray: np.ndarray, box: Box, margin: float = 0.15) -> np.ndarray:
    """The face with a margin, clipped to the frame (no rotation)."""
    x, y, w, h = expand_box(box, margin, gray.shape)
    return gray[y:y + h, x:x + w]


def align_face(gray: np.ndarray, box: Box, eyes: list[Box], margin: float = 0.15) -> np.ndarray:
    """The face crop rotated so the eyes are level (falls back to `crop_face` without 2 eyes).

    The rotation is about the eye midpoint. Rather than rotating the whole frame and cutting
    the face out, we fold the crop offset into the affine matrix so warpAffine computes only
    the crop's pixels: the cost is that of the crop, not of the frame. Pixels rotated in from
    outside the frame repeat the border instead of showing black corners.
    """
    angle = roll_angle(eyes)
    if angle is None or abs(angle) < 1.0:  # under a degree the resampling blur costs more
        return crop_face(gray, box, margin)
    (cx1, cy1), (cx2, cy2) = (box_center(e) for e in eyes)
    center = ((cx1 + cx2) / 2.0, (cy1 + cy2) / 2.0)
    # OpenCV's positive angle turns the image counter-clockwise on screen, which undoes a
    # clockwise head tilt (positive roll).
    matrix = cv2.getRotationMatrix2D(center, angle, 1.0)
    x, y, w, h = expand_box(box, margin, gray.shape)
    matrix[0, 2] -= x
    matrix[1, 2] -= y
    return cv2.warpAffine(gray, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
