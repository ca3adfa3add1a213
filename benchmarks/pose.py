"""Head pose and eyebrows measured on the shared photos: `python -m benchmarks.pose`.

What it measures (the figures go to benchmarks/RESULTS.md, "Pose"):

- roll: each shared photo rotated by -20, -10, 10, 20 degrees; the change in roll of each
  face against the applied angle (faces matched to the upright ones by position);
- yaw and pitch: each frontal face warped onto a cylinder and turned by known angles
  (`turn`: a synthetic turn; a face is not a cylinder), the pose read against the angle;
  and the mirror: yaw's sign flips, pitch stays;
- the raw offsets per unit of sin(angle) that set YAW_GAIN and PITCH_GAIN (emotion.face.pose).

`turn` and `rotate_image` are also what tests/test_pose.py uses.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
PHOTOS = ("single_face.jpg", "two_faces.jpg", "group_selfie.jpg")


def rotate_image(image: np.ndarray, angle: float) -> np.ndarray:
    """`image` turned by `angle` degrees clockwise on screen about its centre, same size
    (corners repeat the border). A head in it gains `angle` of roll."""
    h, w = image.shape[:2]
    # OpenCV's positive angle is counter-clockwise on screen: negate for clockwise.
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -angle, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def turn(image: np.ndarray, box, yaw: float = 0.0, pitch: float = 0.0,
         radius: float = 0.6) -> np.ndarray:
    """A synthetic head turn: the face in `box` mapped onto a cylinder of `radius` box
    widths (vertical axis for yaw, horizontal for pitch) and rotated by the angle, with the
    conventions of emotion.face.pose (yaw > 0 toward the image's right, pitch > 0 chin up)."""
    x, y, w, h = box
    H, W = image.shape[:2]
    map_x, map_y = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    if yaw:
        cx, r = x + w / 2.0, radius * w
        s = np.clip((map_x - cx) / r, -1, 1)
        inside = np.abs(map_x - cx) < r
        # What shows at angle phi after the turn was at phi - yaw before it.
        src = cx + r * np.sin(np.clip(np.arcsin(s) - math.radians(yaw), -np.pi / 2, np.pi / 2))
        map_x = np.where(inside, src, map_x).astype(np.float32)
    if pitch:
        cy, r = y + h / 2.0, radius * h
        s = np.clip((map_y - cy) / r, -1, 1)
        inside = np.abs(map_y - cy) < r
        # Chin up: features move up the image, so a row shows what was below it.
        src = cy + r * np.sin(np.clip(np.arcsin(s) + math.radians(pitch), -np.pi / 2, np.pi / 2))
        map_y = np.where(inside, src, map_y).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def frontal_faces():
    """[(name, gray image, box, parts)] for the shared photos' faces with both eyes found."""
    from emotion.face.detector import FaceDetector, PartsDetector
    from emotion.io.images import to_gray8

    detector, parts = FaceDetector(), PartsDetector()
    faces = []
    for name in PHOTOS:
        gray = to_gray8(cv2.imread(str(MEDIA / name)))
        for box in detector.detect(gray):
            found = parts.find(gray, box)
            if len(found.eyes) == 2:
                faces.append((name, gray, box, found))
    return faces


def nearest(boxes, box):
    """The box of `boxes` whose centre is closest to `box`'s, or None."""
    from emotion.face.detector import box_center

    if not boxes:
        return None
    cx, cy = box_center(box)
    return min(boxes, key=lambda b: math.dist(box_center(b), (cx, cy)))


def face_pose(gray, box, detector, parts):
    """(pose, box) of the face found near `box` in `gray` (a window search), or (None, None)."""
    from emotion.face.pose import pose_from_parts

    found = nearest(detector.detect_near(gray, box), box)
    if found is None:
        return None, None
    p = parts.find(gray, found)
    return pose_from_parts(found, p.eyes, p.mouth), found


def measure_turns(angles=(-30, -20, -10, 10, 20, 30)) -> dict:
    from emotion.face.detector import FaceDetector, PartsDetector
    from emotion.face.pose import pose_offsets

    detector, parts = FaceDetector(), PartsDetector()
    out = {}
    for axis in ("yaw", "pitch"):
        rows = []  # (angle, estimate, raw offset)
        for name, gray, box, _ in frontal_faces():
            for angle in angles:
                warped = turn(gray, box, **{axis: angle})
                pose, found = face_pose(warped, box, detector, parts)
                if pose is None:
                    rows.append((angle, None, None))
                    continue
                p = parts.find(warped, found)
                cues = pose_offsets(found, p.eyes, p.mouth)
                keys = ("eyes_x", "mouth_x") if axis == "yaw" else ("eyes_y", "mouth_y")
                raw = [cues[k] for k in keys if k in cues]
                rows.append((angle, getattr(pose, axis), float(np.mean(raw)) if raw else None))
        found = [(a, e, r) for a, e, r in rows if e is not None]
        sign = sum(1 for a, e, _ in found if np.sign(e) == np.sign(a))
        fit = [(math.sin(math.radians(a)), r) for a, _, r in found if r is not None]
        s, r = np.array(fit).T if fit else (np.zeros(1), np.zeros(1))
        gain = float((s * r).sum() / (s * s).sum())  # least squares through the origin
        if axis == "pitch":
            gain = -gain  # chin up moves the features up: a negative offset
        errors = [abs(e - a) for a, e, _ in found]
        out[axis] = {"cases": len(rows), "estimated": len(found), "sign_agrees": sign,
                     "gain_fit": round(gain, 3),
                     "mean_abs_error_deg": round(float(np.mean(errors)), 1) if errors else None}
    return out


def measure_mirror() -> dict:
    from emotion.face.detector import FaceDetector, PartsDetector

    detector, parts = FaceDetector(), PartsDetector()
    flips = kept = cases = 0
    pitch_diff = []
    for name, gray, box, _ in frontal_faces():
        for yaw in (-20, 20):
            warped = turn(gray, box, yaw=yaw)
            a, _ = face_pose(warped, box, detector, parts)
            W = gray.shape[1]
            mirrored_box = (W - box[0] - box[2], box[1], box[2], box[3])
            b, _ = face_pose(cv2.flip(warped, 1), mirrored_box, detector, parts)
            if a is None or b is None or a.yaw is None or b.yaw is None:
                continue
            cases += 1
            flips += np.sign(a.yaw) == -np.sign(b.yaw)
            if a.pitch is not None and b.pitch is not None:
                pitch_diff.append(abs(a.pitch - b.pitch))
                kept += 1
    return {"cases": cases, "yaw_sign_flips": int(flips),
            "pitch_mean_abs_change_deg": round(float(np.mean(pitch_diff)), 1) if kept else None}


def rotated_roll(gray, guess, detector, parts):
    """The roll of the face near `guess`: upright search first, then rotated copies."""
    from emotion.face.rotate import find_rotated

    box = nearest(detector.detect_near(gray, guess), guess)
    if box is not None:
        roll = parts.find(gray, box).roll
        if roll is not None:
            return roll
    hits = find_rotated(gray, detector, parts, near=guess)
    return hits[0].parts.roll if hits else None


def measure_roll(angles=(-20, -10, 10, 20)) -> dict:
    from emotion.face.detector import FaceDetector, PartsDetector

    detector, parts = FaceDetector(), PartsDetector()
    errors, missed = [], 0
    for name, gray, box, found in frontal_faces():
        H, W = gray.shape
        for angle in angles:
            rotated = rotate_image(gray, angle)
            # Where the face's centre went: the same rotation about the image centre.
            a = math.radians(angle)
            dx, dy = box[0] + box[2] / 2 - W / 2, box[1] + box[3] / 2 - H / 2
            cx = W / 2 + dx * math.cos(a) - dy * math.sin(a)
            cy = H / 2 + dx * math.sin(a) + dy * math.cos(a)
            guess = (int(cx - box[2] / 2), int(cy - box[3] / 2), box[2], box[3])
            roll = rotated_roll(rotated, guess, detector, parts)
            if roll is None:
                missed += 1
                continue
            errors.append(abs((roll - found.roll) - angle))
    return {"cases": len(errors) + missed, "measured": len(errors),
            "mean_abs_error_deg": round(float(np.mean(errors)), 1) if errors else None,
            "max_abs_error_deg": round(float(np.max(errors)), 1) if errors else None}


def main() -> int:
    if not MEDIA.is_dir():
        print(f"shared media not found at {MEDIA}", file=sys.stderr)
        return 1
    print(json.dumps({"turns": measure_turns(), "mirror": measure_mirror(),
                      "roll": measure_roll()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
