"""68 landmarks and the head pose of each face, from the geometry head of the FaceNet
(emotion.cnn.models), in image pixels.

A face box from the detector becomes a crop the way FER2013's faces were cut (the box
grown by MARGIN on every side), resized to 48x48 for the network. The network answers the
points and the pose *in the crop*; `FaceCrop` keeps the affine map from the image to the
crop, so the points go back to image pixels exactly, whatever the crop's rotation, size
and shape.

The crop is levelled by the landmarks' own eyes: a first pass on the upright crop gives
the eye line, and a face rolled by more than LEVEL_MIN_DEGREES gets a second pass on a
crop rotated by that angle about the box centre, which looks like the upright faces the
network learned from. The roll of the second pass plus the rotation is the face's roll.
The emotion is read from the same levelled crop (EmotionClassifier), so the classifier
also sees upright faces.

Coordinates: points are continuous pixel coordinates (pixel i covers [i, i + 1)), as in
emotion.face.ibug68 and the teacher's labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from emotion.face import geometry, ibug68
from emotion.face.detector import FaceParts
from emotion.face.pose import HeadPose

MARGIN = 0.15            # the classifier's crop margin (emotion.face.detector.expand_box)
LEVEL_MIN_DEGREES = 3.0  # a smaller roll is not worth a second pass (and its resampling)


@dataclass
class FaceCrop:
    """A face cut out of the image: `image` (h, w) uint8, and `to_crop`, the 2x3 affine map
    from image pixels to crop pixels (continuous coordinates)."""

    image: np.ndarray
    to_crop: np.ndarray
    angle: float  # degrees the crop is turned clockwise from the image: it undoes a roll

    def to_image(self, points: np.ndarray, size: float) -> np.ndarray:
        """Points (..., 2) in a `size` x `size` copy of the crop -> image pixels."""
        h, w = self.image.shape[:2]
        p = np.asarray(points, np.float64) * [w / size, h / size]  # resize: pure scale
        inverse = cv2.invertAffineTransform(self.to_crop)
        return (p @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)


def face_crop(gray: np.ndarray, box, roll: float = 0.0, margin: float = MARGIN) -> FaceCrop:
    """The face in `box` (x, y, w, h) grown by `margin` a side, turned by -`roll` degrees
    about the box centre so that a face rolled by `roll` comes out level. Pixels from
    outside the image repeat its border (as augment.affine does in training)."""
    x, y, w, h = (float(v) for v in box)
    cw, ch = round(w * (1 + 2 * margin)), round(h * (1 + 2 * margin))
    cx, cy = x + w / 2, y + h / 2
    theta = np.deg2rad(roll)
    cos, sin = np.cos(theta), np.sin(theta)
    # image -> crop, continuous coordinates: move the box centre to the origin, turn by
    # -roll (counter-clockwise on screen, y down), move to the crop's centre.
    linear = np.array([[cos, sin], [-sin, cos]])
    offset = np.array([cw / 2, ch / 2]) - linear @ [cx, cy]
    to_crop = np.hstack([linear, offset[:, None]])
    # warpAffine indexes pixel centres (continuous - 0.5) on both sides.
    index_offset = offset + linear @ [0.5, 0.5] - 0.5
    image = cv2.warpAffine(gray, np.hstack([linear, index_offset[:, None]]), (cw, ch),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return FaceCrop(image=image, to_crop=to_crop, angle=float(roll))


@dataclass
class FaceGeometry:
    """One face's landmarks (68, 2) in image pixels (iBUG order) and pose (yaw, pitch,
    roll) in degrees (conventions: emotion.face.pose)."""

    points: np.ndarray
    yaw: float
    pitch: float
    roll: float
    presence: float = 1.0  # the model's probability that its crop held a well-framed face

    def part_boxes(self) -> dict:
        """Eye, eyebrow and mouth boxes (x, y, w, h) from the points (ibug68.part_boxes)."""
        return ibug68.part_boxes(self.points)

    def pose(self) -> HeadPose:
        return HeadPose(yaw=self.yaw, pitch=self.pitch, roll=self.roll)

    def parts(self, face_height: float) -> FaceParts:
        """The eyes, eyebrows and mouth as FaceParts (whole-pixel boxes, image-left first,
        as every front end reports them), the roll of the model, and the eyebrow raise: the
        mean distance from each eyebrow's centre to its eye's centre over `face_height`."""
        boxes = self.part_boxes()

        def whole(box):  # the outer whole pixels of a continuous box
            x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
            return (x0, y0, int(np.ceil(box[0] + box[2])) - x0,
                    int(np.ceil(box[1] + box[3])) - y0)

        sides = [("right_eye", "right_brow", ibug68.RIGHT_EYE, ibug68.RIGHT_BROW),
                 ("left_eye", "left_brow", ibug68.LEFT_EYE, ibug68.LEFT_BROW)]
        sides.sort(key=lambda s: boxes[s[0]][0])  # image-left first
        raise_ = np.mean([np.linalg.norm(self.points[eye].mean(0) - self.points[brow].mean(0))
                          for _, _, eye, brow in sides]) / max(face_height, 1e-6)
        return FaceParts(eyes=[whole(boxes[e]) for e, _, _, _ in sides],
                         mouth=whole(boxes["mouth"]), roll=self.roll,
                         eyebrows=[whole(boxes[b]) for _, b, _, _ in sides],
                         eyebrow_raise=float(raise_))


# The box of a face from its points, as the face detector draws it: every front end reports
# it as the face's box, and a followed face's next crop (emotion.video.follow) is framed as
# the photo path frames it (the detector's box grown by the
# classifier's margin), so the same face gets the same crop, points, pose and emotion through
# `predict` and `video`, and the box a user sees is the detector's kind. Measured on 2,310
# FER2013 Training faces (benchmarks/frame_box.py: the photo detector's box on each face as
# the teacher saw it, against the teacher's points): the box's side is FRAME_SIDE times the
# points' spread (the root mean square distance of the 68 points from their mean, which the
# roll does not change), and its centre sits FRAME_OFFSET spreads from the points' mean, in
# the face's own axes (x along the eye line, y down the face): above it, the forehead having
# no points. The medians; the side varies by 12% (median absolute deviation) about it.
FRAME_SIDE = 3.206
FRAME_OFFSET = (-0.003, -0.311)


def frame_box(points: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
    """(box (x, y, w, h) as floats, roll in degrees) of a face from its 68 points (68, 2)."""
    points = np.asarray(points, np.float64)
    mean = points.mean(axis=0)
    spread = math.sqrt(((points - mean) ** 2).sum(axis=1).mean())
    roll = float(eye_line_roll(points))
    t = math.radians(roll)
    # The offset turns with the face: the face's x axis is the eye line (clockwise by roll
    # on screen, y down).
    dx, dy = FRAME_OFFSET
    cx = mean[0] + spread * (dx * math.cos(t) - dy * math.sin(t))
    cy = mean[1] + spread * (dx * math.sin(t) + dy * math.cos(t))
    side = FRAME_SIDE * spread
    return (cx - side / 2, cy - side / 2, side, side), roll


def eye_line_roll(points: np.ndarray) -> np.ndarray:
    """Roll in degrees from the eye centres, points (..., 68, 2) -> (...): the angle of the
    line from the subject's right eye (image left) to the left eye, y down (clockwise +)."""
    right, left = ibug68.eye_centres(points)
    d = left - right
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def locate(run_geometry, gray: np.ndarray, boxes, rolls=None, relevel: bool = True,
           size: int = 48):
    """Landmarks and pose of every face box: ([FaceGeometry], [FaceCrop], outputs).

    `run_geometry(crops) -> (probabilities (N, 7), geometry (N, 139), presence (N,))` runs
    the FaceNet on gray crops (EmotionClassifier.predict_geometry); the probabilities of the
    crops the points come from are returned as `outputs`, so a caller whose classifier is
    that same network reads the emotion of the levelled crops without another pass.

    rolls: a roll per box to level the first crop by (a track's last roll), else upright.
    relevel: a face whose eye line in the crop is off level by more than LEVEL_MIN_DEGREES
    gets the second, levelled pass; True or False for every box, or one bool per box (a
    video's track is levelled by its last roll instead, and only a new one relevels).
    """
    if not len(boxes):
        return [], [], np.zeros((0, 7), np.float32)
    hints = [0.0] * len(boxes) if rolls is None else [float(r or 0.0) for r in rolls]
    crops = [face_crop(gray, box, roll=r) for box, r in zip(boxes, hints)]
    logits, raw, presence = run_geometry([c.image for c in crops])
    points, _ = geometry.decode(raw, size)
    off_level = eye_line_roll(points)  # in the crop: what is left to undo
    rolls = [c.angle + r for c, r in zip(crops, off_level)]
    relevel = [relevel] * len(boxes) if isinstance(relevel, bool) else list(relevel)
    redo = [i for i, (r, again) in enumerate(zip(off_level, relevel))
            if again and abs(r) > LEVEL_MIN_DEGREES]
    if redo:
        levelled = [face_crop(gray, boxes[i], roll=float(rolls[i])) for i in redo]
        again_logits, again, again_presence = run_geometry([c.image for c in levelled])
        for k, i in enumerate(redo):
            crops[i] = levelled[k]
            raw[i], logits[i], presence[i] = again[k], again_logits[k], again_presence[k]
    points, pose = geometry.decode(raw, size)
    faces = [FaceGeometry(points=crop.to_image(p, size), yaw=float(a[0]), pitch=float(a[1]),
                          roll=float(a[2] + crop.angle), presence=float(f))
             for crop, p, a, f in zip(crops, points, pose, presence)]
    return faces, crops, logits
