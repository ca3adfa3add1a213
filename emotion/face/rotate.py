"""Finding rolled faces: search copies of the image rotated by a few angles.

The frontal Haar cascade was trained on upright faces and loses a head rolled past about
15 degrees. A head rolled by r is upright again in a copy rotated by r the other way, so
we search copies turned by ROTATIONS (+-15 and +-30 degrees), find the face and its parts
there, and map them back to the frame:

- the face box and each part (eyes, eyebrows, mouth): the centre rotated back, the size
  kept (the face is as large upright as rolled), so the parts are in frame pixels like any
  other; the roll follows from the mapped-back eye centres, which is the roll measured in
  the copy plus the search angle;
- yaw and pitch are read in the upright copy, where the face box is tight.

It costs one face search per angle, so it runs only when asked: `emotion predict
--rotations` for photos (`near=` limits it to a window around a box). A video needs none:
a followed face's crop is levelled by its own landmarks' roll (emotion.video.follow).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from emotion.face.detector import (Box, FaceDetector, FaceParts, PartsDetector, expand_box,
                                   roll_angle)
from emotion.face.detector import drop_duplicates, eyebrow_raise
from emotion.face.pose import HeadPose, pose_from_parts

ROTATIONS = (15.0, -15.0, 30.0, -30.0)  # degrees of roll searched, nearest to upright first


@dataclass
class RotatedFace:
    """A face found in a rotated copy, mapped back to frame pixels."""

    box: Box
    parts: FaceParts
    pose: HeadPose
    angle: float  # the roll the search undid


def _map_box(box: Box, inverse: np.ndarray, offset: tuple[int, int]) -> Box:
    """The face box mapped back by its centre, keeping its size. (The axis-aligned box
    around the rotated box is up to 1.4 times too big, and a track fed such boxes frame
    after frame grows and drifts off the face: seen on group_pan.mp4.)"""
    return _map_part(box, inverse, offset)


def _map_part(box: Box, inverse: np.ndarray, offset: tuple[int, int]) -> Box:
    """A part mapped back by its centre, keeping its size: an eye box stays the eye's size
    (the box around a rotated part would be up to 1.4 times too big)."""
    x, y, w, h = box
    cx, cy = inverse @ np.array([x + w / 2.0, y + h / 2.0, 1.0])
    return (int(round(cx - w / 2.0)) + offset[0], int(round(cy - h / 2.0)) + offset[1], w, h)


def _search(copy: np.ndarray, detector: FaceDetector, matrix: np.ndarray, near: Box | None,
            offset: tuple[int, int]) -> list[Box]:
    """The faces of a rotated copy, in copy pixels. Near a box (`near`), the same window
    search as upright (FaceDetector.detect_near: faces of the box's size, near where it
    was), so a rotated copy can neither add a face of another size nor cost a full scan."""
    if near is None:
        return detector.detect(copy)
    cx, cy = matrix @ np.array([near[0] + near[2] / 2.0 - offset[0],
                                near[1] + near[3] / 2.0 - offset[1], 1.0])
    w, h = near[2], near[3]
    return detector.detect_near(copy, (int(round(cx - w / 2.0)), int(round(cy - h / 2.0)), w, h))


def find_rotated(gray: np.ndarray, detector: FaceDetector, parts: PartsDetector,
                 near: Box | None = None, angles=ROTATIONS) -> list[RotatedFace]:
    """Faces found in rotated copies of `gray` (or of the window around `near`).

    With `near` the first angle that finds a face there wins (one face is looked for); for a
    whole image every angle is searched and duplicates are dropped (the larger box kept,
    as drop_duplicates does). The caller merges these with its upright faces.
    """
    if near is not None:
        x, y, w, h = expand_box(near, 0.5, gray.shape)
    else:
        x, y, (h, w) = 0, 0, gray.shape[:2]
    if w < 24 or h < 24:
        return []
    window = gray[y:y + h, x:x + w]
    found: list[RotatedFace] = []
    for angle in angles:
        # cv2's positive angle turns the copy counter-clockwise, which undoes a clockwise
        # roll of `angle`. The copy keeps the window's size: its corners are cut, the centre
        # where the face is (near) or most faces are (a photo) stays.
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        copy = cv2.warpAffine(window, matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        inverse = cv2.invertAffineTransform(matrix)
        for box in _search(copy, detector, matrix, near, (x, y)):
            p = parts.find(copy, box)
            upright = pose_from_parts(box, p.eyes, p.mouth)
            eyes = [_map_part(e, inverse, (x, y)) for e in p.eyes]
            brows = [None if b is None else _map_part(b, inverse, (x, y)) for b in p.eyebrows]
            frame_box = _map_box(box, inverse, (x, y))
            mapped = FaceParts(
                eyes=eyes, mouth=None if p.mouth is None else _map_part(p.mouth, inverse, (x, y)),
                roll=roll_angle(eyes), eyebrows=brows,
                eyebrow_raise=eyebrow_raise(eyes, brows, frame_box))
            roll = None if p.roll is None else p.roll + angle
            found.append(RotatedFace(frame_box, mapped,
                                     HeadPose(yaw=upright.yaw, pitch=upright.pitch, roll=roll),
                                     angle))
        if near is not None and found:
            break
    if near is not None:
        return found[:1]
    kept = drop_duplicates([f.box for f in found], detector.config.max_overlap)
    return [next(f for f in found if f.box == box) for box in kept]
