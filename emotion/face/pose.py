"""Head pose from the face parts' geometry: yaw, pitch and roll in degrees.

Conventions (the one place they are written; everything else refers here):

    yaw   > 0  the face turns toward the image's right (its nose points right on screen)
    pitch > 0  the face tilts up (chin up)
    roll  > 0  the head tilts clockwise in the image (the image-right eye is lower)

This is geometry on Haar parts, not a 3D head model. A frontal face cascade boxes the
pattern of eyes, nose and mouth, and the parts cascades box the eyes and the mouth inside
it; how those boxes sit relative to each other moves with the head:

- roll: the angle of the line through the two eye centres (detector.roll_angle);
- yaw: when the head turns, the features slide toward the side it turns to while the
  face's outline, which the face box partly follows, stays: the eye midpoint and the mouth
  centre move across the box. Measured in the box, with the roll undone first, as
  fractions of the box width from where a frontal face has them;
- pitch: the same vertically: the eyes and the mouth ride up the box when the chin goes up.

Each offset becomes an angle with `asin(offset / gain)`: a feature at a fixed depth in
front of the turning axis moves by that depth times the sine of the angle. Both use the
eye midpoint, and the mouth when the eyes are missing.

How the constants were chosen (benchmarks/RESULTS.md, head pose, 2026-12-03, 2-vCPU Intel
Xeon KVM guest, has the figures):
the frontal offsets (EYES_X0 ... MOUTH_Y0) are the medians over the frontal faces of the
shared photos and clips and over the FER2013 PublicTest crops where both eyes were found
(608 of the first 1500, resized to 192 px): they agree within 0.015 box widths, except
the eye height (0.40 in the photos and clips, 0.375 in FER's tight crops: 0.39 is taken).
The gains are weakly pinned, and this is the method's limit: the face box follows the
features, so they move little in it. On synthetic turns (the shared frontal faces warped
onto a cylinder and rotated, benchmarks/pose.py) the eye midpoint moves only 0.02 box
widths per unit of sin(yaw), because the box moves with it; on real faces more, since
the outline of a real head stays put. So the gains are set so that the middle 80% of the
FER2013 crops' offsets span about +-25 degrees, an assumption about that data set's poses,
not a measurement. Trust the sign of a clear turn and the order of faces, not the degrees:
on the synthetic turns of +-10 to 30 degrees the sign agrees in about half to two thirds
of the cases. Roll, from the eye line, is the one angle measured well (a few degrees).
Beyond that the eyes are lost, and OpenCV's profile cascade (trained on faces turned to
the image's left) run on the face's window and on its mirror tells the side: PROFILE_YAW,
a coarse +-45 degrees (about where the eye cascade loses the far eye), is all it can say;
on two_faces.jpg it fires, on the right side, for a face turned by perhaps 20-30 degrees. It runs only where the
eyes are missing (and in the video pipeline only when the parts are refreshed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from emotion.face.detector import Box, box_center, expand_box, load_cascade, roll_angle

PROFILE_CASCADE = "haarcascade_profileface.xml"

# Where a frontal face has its parts in its box, as fractions of the box (see the docstring).
EYES_X0, EYES_Y0 = 0.0, 0.39     # eye midpoint: offset from the box centre across; height
MOUTH_X0, MOUTH_Y0 = 0.015, 0.79  # mouth centre: offset from the box centre across; height
# Offset per unit of sin(angle) (see the docstring): FER2013's p10-p90 spread of each
# offset (eyes across +-0.03, eyes down +-0.03, mouth across +-0.05) over sin(25 degrees);
# the mouth's height spreads only +-0.02 in FER but its box is loose (0.04 off on the
# shared photos' faces), so it gets the eyes' gain doubled rather than 0.05.
EYES_X_GAIN, EYES_Y_GAIN = 0.07, 0.07
MOUTH_X_GAIN, MOUTH_Y_GAIN = 0.12, 0.14
PROFILE_YAW = 45.0  # the coarse |yaw| of a face only the profile cascade finds
PROFILE_PX = 64     # the profile search scales the face window so the face is this wide


@dataclass(frozen=True)
class HeadPose:
    """Yaw, pitch and roll in degrees (conventions: the module docstring); None = unknown."""

    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None

    def to_dict(self) -> dict:
        return {name: None if value is None else round(float(value), 1)
                for name, value in (("yaw", self.yaw), ("pitch", self.pitch),
                                    ("roll", self.roll))}


def _angle(offset: float, gain: float) -> float:
    """asin(offset / gain) in degrees, the offset clipped to the gain (+-90 at most)."""
    return math.degrees(math.asin(max(-1.0, min(1.0, offset / gain))))


def _in_face_frame(point, box: Box, roll: float) -> tuple[float, float]:
    """`point` in the face box's own frame: the roll undone about the box centre, then
    (across from the centre, down from the top) as fractions of the box's width and height."""
    cx, cy = box_center(box)
    a = math.radians(-roll)
    dx, dy = point[0] - cx, point[1] - cy
    rx = dx * math.cos(a) - dy * math.sin(a)
    ry = dx * math.sin(a) + dy * math.cos(a)
    return rx / box[2], (ry + box[3] / 2.0) / box[3]


def pose_offsets(box: Box, eyes: list[Box], mouth: Box | None) -> dict[str, float]:
    """The raw cues, as offsets from a frontal face's (fractions of the box): eyes_x,
    eyes_y (with two eyes), mouth_x, mouth_y (with a mouth). Exposed for the calibration."""
    roll = roll_angle(eyes) or 0.0
    cues = {}
    if len(eyes) == 2:
        (x1, y1), (x2, y2) = (box_center(e) for e in eyes)
        ex, ey = _in_face_frame(((x1 + x2) / 2, (y1 + y2) / 2), box, roll)
        cues.update(eyes_x=ex - EYES_X0, eyes_y=ey - EYES_Y0)
    if mouth is not None:
        mx, my = _in_face_frame(box_center(mouth), box, roll)
        cues.update(mouth_x=mx - MOUTH_X0, mouth_y=my - MOUTH_Y0)
    return cues


def pose_from_parts(box: Box, eyes: list[Box], mouth: Box | None) -> HeadPose:
    """Yaw and pitch from where the eyes and the mouth sit in the box, roll from the eyes.

    Each from the eye midpoint, or from the mouth without two eyes (the smile cascade's
    box is looser than the eyes', so it is the second choice). None where neither was found
    (estimate_pose may still find the side with the profile cascade).
    """
    cues = pose_offsets(box, eyes, mouth)
    if "eyes_x" in cues:
        yaw = _angle(cues["eyes_x"], EYES_X_GAIN)
    elif "mouth_x" in cues:
        yaw = _angle(cues["mouth_x"], MOUTH_X_GAIN)
    else:
        yaw = None
    # Features riding up the box (a negative offset down) = the chin goes up = pitch > 0.
    if "eyes_y" in cues:
        pitch = _angle(-cues["eyes_y"], EYES_Y_GAIN)
    elif "mouth_y" in cues:
        pitch = _angle(-cues["mouth_y"], MOUTH_Y_GAIN)
    else:
        pitch = None
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll_angle(eyes))


class ProfileDetector:
    """Which way a face the eye cascade lost is turned, from OpenCV's profile cascade.

    The cascade finds faces turned toward the image's left; on the mirrored window it finds
    those turned right. `side(gray, box)` is -1 (left), +1 (right) or None (neither, or
    both equally: a frontal face fires it on both sides about as often).
    """

    def __init__(self, cascade: str = PROFILE_CASCADE, min_neighbors: int = 3):
        self.cascade = load_cascade(cascade)
        self.min_neighbors = min_neighbors

    def _support(self, window: np.ndarray) -> int:
        """Neighbours of the best-supported profile hit in `window` (0 = none)."""
        side = min(window.shape[:2])
        found, neighbours = self.cascade.detectMultiScale2(
            window, scaleFactor=1.1, minNeighbors=self.min_neighbors,
            minSize=(int(side * 0.5), int(side * 0.5)))
        return int(max(neighbours)) if len(found) else 0

    def side(self, gray: np.ndarray, box: Box) -> int | None:
        x, y, w, h = expand_box(box, 0.2, gray.shape)
        if w < 8 or h < 8:
            return None
        scale = PROFILE_PX * 1.4 / w
        window = cv2.equalizeHist(cv2.resize(gray[y:y + h, x:x + w],
                                             (max(1, round(w * scale)), max(1, round(h * scale))),
                                             interpolation=cv2.INTER_AREA))
        left, right = self._support(window), self._support(cv2.flip(window, 1))
        if left == right:
            return None
        return -1 if left > right else 1


def estimate_pose(gray: np.ndarray, box: Box, eyes: list[Box], mouth: Box | None,
                  profile: ProfileDetector | None = None) -> HeadPose:
    """The head pose of the face in `box`: from the parts, and from the profile cascade
    when the eyes are missing and `profile` is given (the coarse +-PROFILE_YAW)."""
    pose = pose_from_parts(box, eyes, mouth)
    if len(eyes) == 2 or profile is None:
        return pose
    side = profile.side(gray, box)
    if side is None:
        return pose
    return HeadPose(yaw=side * PROFILE_YAW, pitch=pose.pitch, roll=None)
