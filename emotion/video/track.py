"""What carries a face's readings from frame to frame: its smoothed probabilities and pose.

A followed face (emotion.video.follow.Followed) gets a new reading every frame or every few;
each is folded into an exponential moving average whose weight comes from the time since the
last one, so the display forgets at the same rate in seconds whatever the frame rate. `iou`
says how much two boxes overlap (two tracks that converged on one face).
"""

from __future__ import annotations

import math

import numpy as np

from emotion.face.detector import Box
from emotion.face.pose import HeadPose


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes, in [0, 1]."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def smoothing_weight(dt: float | None, time_constant: float, default: float) -> float:
    """Weight of a new sample in an exponential moving average, from the time since the last.

    With `alpha = 1 - exp(-dt / tau)` the average forgets at the same rate *in seconds*
    whether the loop runs at 30 fps or 5 fps; a fixed per-frame alpha would make the display
    sluggish exactly when the machine is slow. Without timestamps we use `default`.
    """
    if dt is None or dt <= 0 or time_constant <= 0:
        return default
    return 1.0 - math.exp(-dt / time_constant)


def smooth_probabilities(track, probabilities: np.ndarray, timestamp: float | None,
                         time_constant: float, default_weight: float = 0.5) -> np.ndarray:
    """Fold a new (7,) probability vector into `track.probabilities` (its average, None
    before the first) and return it; `track.last_time` is the time of the last update.

    A convex combination of probability vectors still sums to 1, so the smoothed vector
    is a distribution too.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if track.probabilities is None:
        track.probabilities = probabilities.copy()
    else:
        known = timestamp is not None and track.last_time is not None
        dt = timestamp - track.last_time if known else None
        a = smoothing_weight(dt, time_constant, default_weight)
        mixed = a * probabilities + (1 - a) * track.probabilities
        track.probabilities = mixed.astype(np.float32)
    track.last_time = timestamp
    return track.probabilities


def smooth_pose(track, pose: HeadPose, timestamp: float | None, time_constant: float,
                default_weight: float = 0.5) -> HeadPose:
    """Fold a new pose into `track.pose` (`track.pose_time`: the time of the last), with
    `time_constant`, and return it.

    Each angle is averaged on its own. An angle the new pose lacks (the eyes were not
    found this time) becomes unknown rather than keeping an old value: a missing part
    is reported missing, never guessed.
    """
    known = timestamp is not None and track.pose_time is not None
    dt = timestamp - track.pose_time if known else None
    a = smoothing_weight(dt, time_constant, default_weight)

    def mix(new, old):
        if new is None or old is None:
            return new
        return a * new + (1 - a) * old

    old = track.pose
    track.pose = HeadPose(yaw=mix(pose.yaw, old.yaw), pitch=mix(pose.pitch, old.pitch),
                          roll=mix(pose.roll, old.roll))
    track.pose_time = timestamp
    return track.pose
