"""The geometry head's numbers: 68 landmarks and the head pose, to and from what the network
learns.

The network sees a 48x48 face crop and answers 139 numbers (emotion.cnn.models.FaceNet). A
network learns best when its targets are of order one, centred on zero, whatever the crop
size, so it does not learn pixels and degrees but:

    points  (x / size - 0.5, y / size - 0.5): the crop's centre is 0, its edges +-0.5
    angles  degrees / ANGLE_UNIT: a face turned by 30 degrees is 1

`encode` makes targets from (points in crop pixels, yaw/pitch/roll in degrees) and
`decode` undoes it. Pose conventions: emotion.face.pose. Point order: emotion.face.ibug68.
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = 68
ANGLE_UNIT = 30.0  # degrees per unit of the pose outputs


def encode(points: np.ndarray, pose: np.ndarray, size: float = 48.0) -> np.ndarray:
    """points (N, 68, 2) crop pixels, pose (N, 3) degrees -> targets (N, 139) float32."""
    points = np.asarray(points, np.float32)
    pose = np.asarray(pose, np.float32)
    n = len(points)
    flat = (points / np.float32(size) - np.float32(0.5)).reshape(n, NUM_POINTS * 2)
    return np.concatenate([flat, pose / np.float32(ANGLE_UNIT)], axis=1).astype(np.float32)


def decode(geometry: np.ndarray, size: float = 48.0) -> tuple[np.ndarray, np.ndarray]:
    """targets or network outputs (N, 139) -> (points (N, 68, 2) in crop pixels of a crop
    `size` wide, pose (N, 3) degrees)."""
    geometry = np.asarray(geometry, np.float32)
    n = len(geometry)
    points = (geometry[:, : NUM_POINTS * 2].reshape(n, NUM_POINTS, 2) + np.float32(0.5))
    pose = geometry[:, NUM_POINTS * 2 :] * np.float32(ANGLE_UNIT)
    return (points * np.float32(size)).astype(np.float32), pose.astype(np.float32)
