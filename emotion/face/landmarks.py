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

from dataclasses import dataclass

import cv2
import numpy as np

from emotion.face import geometry, ibug68

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

    def part_boxes(self) -> dict:
        """Eye, eyebrow and mouth boxes (x, y, w, h) from the points (ibug68.part_boxes)."""
        return ibug68.part_boxes(self.points)


def eye_line_roll(points: np.ndarray) -> np.ndarray:
    """Roll in degrees from the eye centres, points (..., 68, 2) -> (...): the angle of the
    line from the subject's right eye (image left) to the left eye, y down (clockwise +)."""
    right, left = ibug68.eye_centres(points)
    d = left - right
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def locate(run_geometry, gray: np.ndarray, boxes, size: int = 48):
    """Landmarks and pose of every face box: ([FaceGeometry], [FaceCrop], outputs).

    `run_geometry(crops) -> (logits (N, 7), geometry (N, 139))` runs the FaceNet on gray
    crops; its last call's logits come back as `outputs` so a caller whose classifier is
    that same network reads the emotion of the levelled crops without another pass.
    """
    if not len(boxes):
        return [], [], np.zeros((0, 7), np.float32)
    crops = [face_crop(gray, box) for box in boxes]
    logits, raw = run_geometry([c.image for c in crops])
    points, _ = geometry.decode(raw, size)
    rolls = eye_line_roll(points)
    redo = [i for i, r in enumerate(rolls) if abs(r) > LEVEL_MIN_DEGREES]
    if redo:
        levelled = [face_crop(gray, boxes[i], roll=float(rolls[i])) for i in redo]
        again_logits, again = run_geometry([c.image for c in levelled])
        for k, i in enumerate(redo):
            crops[i] = levelled[k]
            raw[i], logits[i] = again[k], again_logits[k]
    points, pose = geometry.decode(raw, size)
    faces = [FaceGeometry(points=crop.to_image(p, size), yaw=float(a[0]), pitch=float(a[1]),
                          roll=float(a[2] + crop.angle))
             for crop, p, a in zip(crops, points, pose)]
    return faces, crops, logits
