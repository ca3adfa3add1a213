"""The landmark teacher's labels, lined up with the FER2013 images a run trains on.

emotion/training/landmark_teacher.py (run in MediaPipe's own virtual environment) writes
one label per row of fer2013.csv: 68 points in the 48x48 image's pixels and yaw, pitch,
roll in degrees, NaN where MediaPipe found no face mesh. Training needs them for the
images it actually uses, which are not all rows in order (splits, --limit, FER+ dropping
rows, skipped bad rows): each loaded image carries its source row (FER2013.rows), and the
labels are taken by that row. The file also records the SHA-256 of the CSV it was made
from, and a run on another file is refused rather than trained on labels of other faces.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.face import geometry

REQUIRED = ("landmarks", "pose", "found", "source_sha256")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_labels(path, source) -> dict:
    """The teacher file at `path`, checked against the data file `source` it must come from:
    {"landmarks" (R, 68, 2), "pose" (R, 3), "found" (R,) bool} for the R rows of the CSV."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--landmarks: no such file: {path} (make it with "
                        "emotion/training/landmark_teacher.py, see the README)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise UserError(f"--landmarks: {path} is not a readable .npz file ({err})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise UserError(f"--landmarks: {path} has no {', '.join(missing)}: it is not a "
                        "landmark teacher file")
    rows = len(arrays["found"])
    if arrays["landmarks"].shape != (rows, geometry.NUM_POINTS, 2) or arrays["pose"].shape != (rows, 3):
        raise UserError(f"--landmarks: {path}: landmarks {arrays['landmarks'].shape} and pose "
                        f"{arrays['pose'].shape} do not fit {rows} rows of (68, 2) and (3,)")
    made_from = str(arrays["source_sha256"])
    if Path(source).is_file() and file_sha256(source) != made_from:
        raise UserError(f"--landmarks: {path} was made from another data file than "
                        f"{source} (SHA-256 {made_from[:12]}... differs): its labels would "
                        "belong to other faces. Label this file with landmark_teacher.py")
    return {"landmarks": arrays["landmarks"].astype(np.float32),
            "pose": arrays["pose"].astype(np.float32), "found": arrays["found"].astype(bool)}


def targets_for(labels: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (N, 68, 2) pixels, pose (N, 3) degrees, has_label (N,) bool) for the images
    of the 1-based source `rows`. Images without a teacher mesh get zeros and False: the
    loss leaves them out (it never sees a NaN)."""
    at = np.asarray(rows, np.int64) - 1
    if len(at) and (at.min() < 0 or at.max() >= len(labels["found"])):
        raise UserError(f"--landmarks: the teacher file has {len(labels['found'])} rows but "
                        f"the data has row {int(at.max()) + 1}: it was made for another file")
    points, pose = labels["landmarks"][at], labels["pose"][at]
    has = labels["found"][at] & np.isfinite(points).all((1, 2)) & np.isfinite(pose).all(1)
    points = np.where(has[:, None, None], points, 0).astype(np.float32)
    pose = np.where(has[:, None], pose, 0).astype(np.float32)
    return points, pose, has


def errors(pred_points, pred_pose, points, pose, has) -> dict:
    """How far predictions are from the teacher, over the images that have a label:
    nme, the mean point error over the inter-ocular distance (outer eye corners 36 and 45,
    as 300-W reports it), and the mean absolute yaw/pitch/roll errors in degrees."""
    has = np.asarray(has, bool)
    if not has.any():
        return {"labelled": 0, "nme": None, "yaw_mae": None, "pitch_mae": None, "roll_mae": None}
    p, t = np.asarray(pred_points, np.float64)[has], np.asarray(points, np.float64)[has]
    interocular = np.linalg.norm(t[:, 45] - t[:, 36], axis=1)
    point_error = np.linalg.norm(p - t, axis=2).mean(1) / np.maximum(interocular, 1e-6)
    angle_error = np.abs(np.asarray(pred_pose, np.float64)[has] - np.asarray(pose)[has]).mean(0)
    return {"labelled": int(has.sum()), "nme": float(point_error.mean()),
            "yaw_mae": float(angle_error[0]), "pitch_mae": float(angle_error[1]),
            "roll_mae": float(angle_error[2])}
