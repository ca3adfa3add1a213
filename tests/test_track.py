"""The per-face smoothing of emotion.video.track: box overlap, and the time-based averages of
the probabilities and the pose."""

from types import SimpleNamespace

import numpy as np
import pytest

from emotion.face.pose import HeadPose
from emotion.video.track import iou, smooth_pose, smooth_probabilities, smoothing_weight


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_probability_smoothing_is_time_based_and_stays_a_distribution():
    face = SimpleNamespace(probabilities=None, last_time=None)
    first = np.eye(7, dtype=np.float32)[3]
    np.testing.assert_array_equal(smooth_probabilities(face, first, 0.0, 0.2), first)
    second = np.eye(7, dtype=np.float32)[0]
    smoothed = smooth_probabilities(face, second, 0.2, 0.2)  # one time constant later
    weight = 1 - np.exp(-1)
    assert smoothed[0] == pytest.approx(weight, abs=1e-6)
    assert smoothed[3] == pytest.approx(1 - weight, abs=1e-6)
    assert smoothed.sum() == pytest.approx(1.0) and smoothed.dtype == np.float32
    assert face.probabilities is smoothed and face.last_time == 0.2
    # The same time gap gives the same weight whatever the frame rate.
    half_step = smoothing_weight(0.05, 0.2, 0.5)
    assert smoothing_weight(0.1, 0.2, 0.5) == pytest.approx(1 - (1 - half_step) ** 2)
    assert smoothing_weight(None, 0.2, 0.5) == 0.5


def test_pose_smoothing_averages_each_angle_and_never_keeps_a_lost_one():
    face = SimpleNamespace(pose=HeadPose(), pose_time=None)
    smooth_pose(face, HeadPose(yaw=10.0, pitch=-4.0, roll=2.0), 0.0, 0.05)
    assert (face.pose.yaw, face.pose.pitch, face.pose.roll) == (10.0, -4.0, 2.0)  # the first
    weight = 1 - np.exp(-1)
    smooth_pose(face, HeadPose(yaw=20.0, pitch=None, roll=2.0), 0.05, 0.05)
    assert face.pose.yaw == pytest.approx(10 + 10 * weight)
    assert face.pose.pitch is None  # not found this time: unknown, not the old value
    assert face.pose.roll == pytest.approx(2.0) and face.pose_time == 0.05
