"""Track IDs across frames, carrying boxes between detections, and probability smoothing."""

import numpy as np
import pytest

from emotion.video.track import IoUTracker, iou, smoothing_weight


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_ids_follow_two_moving_faces_and_are_never_reused():
    tracker = IoUTracker(max_missed_frames=2, min_hits=1)
    a, b = [100, 100, 80, 80], [400, 120, 60, 60]
    tracker.step([tuple(a), tuple(b)])  # IDs are given in detection order: a=1, b=2
    ids_a, ids_b = set(), set()
    for _ in range(20):
        a[0] += 4  # both faces drift right, a little per frame
        b[0] += 3
        tracks = tracker.step([tuple(b), tuple(a)])  # detection order must not matter
        by_x = sorted(tracks, key=lambda t: t.box[0])
        ids_a.add(by_x[0].track_id)
        ids_b.add(by_x[1].track_id)
    assert ids_a == {1} and ids_b == {2}

    # Face a disappears: its track survives max_missed_frames frames, then dies for good.
    for missed in range(1, 4):
        ids = {t.track_id for t in tracker.step([tuple(b)])}
        assert ids == ({1, 2} if missed <= 2 else {2})
    ids = {t.track_id for t in tracker.step([tuple(b), tuple(a)])}
    assert ids == {2, 3}


def test_new_tracks_are_tentative_until_seen_twice():
    tracker = IoUTracker(min_hits=2)
    assert tracker.step([]) == []  # the stream's first detection found no face
    face, flicker = (100, 100, 80, 80), (400, 300, 50, 50)
    assert tracker.step([face]) == []                     # tentative: not reported yet
    assert [t.track_id for t in tracker.step([face, flicker])] == [1]
    assert [t.track_id for t in tracker.step(None)] == [1]  # carried frame: no verdict
    assert [t.track_id for t in tracker.step([face])] == [1]  # the flicker was dropped
    assert len(tracker.tracks) == 1
    newcomer = (400, 100, 70, 70)
    tracker.step([face, newcomer])
    assert sorted(t.track_id for t in tracker.step([face, newcomer])) == [1, 2]  # no gap


def test_centroid_fallback_matches_a_jump_with_little_overlap():
    tracker = IoUTracker(min_iou=0.3, max_center_distance=0.75, min_hits=1)
    tracker.step([(100, 100, 100, 100)])
    # Moved half a face width and shrank: IoU ~0.2 (below 0.3) but the centre is close.
    (track,) = tracker.step([(160, 110, 80, 80)])
    assert iou((100, 100, 100, 100), (160, 110, 80, 80)) < 0.3
    assert track.track_id == 1
    # Far away: a new face, and the old track is kept (missed once) until it times out.
    ids = sorted(t.track_id for t in tracker.step([(600, 100, 80, 80)]))
    assert ids == [1, 2]


def test_faces_in_the_first_detection_are_reported_at_once():
    tracker = IoUTracker()  # the defaults, as the video and live commands use them
    face, newcomer = (100, 100, 80, 80), (250, 100, 60, 60)
    assert [t.track_id for t in tracker.step([face])] == [1]  # nothing to wait for
    assert [t.track_id for t in tracker.step(None)] == [1]    # carried between detections
    # after the start, a new face waits for its second detection (see the test above)
    assert [t.track_id for t in tracker.step([face, newcomer])] == [1]
    assert [t.track_id for t in tracker.step([face, newcomer])] == [1, 2]


def test_a_face_reported_at_the_start_but_never_seen_again_goes_at_the_next_detection():
    tracker = IoUTracker()
    assert [t.track_id for t in tracker.step([(400, 300, 50, 50)])] == [1]
    assert tracker.step([(100, 100, 80, 80)]) == [] and len(tracker.tracks) == 1


def test_carry_keeps_boxes_between_detections():
    tracker = IoUTracker(max_missed_frames=3)
    tracker.step([(10, 10, 50, 50)])
    tracker.step([(10, 10, 50, 50)])
    for _ in range(20):  # a gap longer than max_missed_frames: only a detection can end it
        (track,) = tracker.step(None)  # no detection ran on this frame
        assert track.box == (10, 10, 50, 50)
    assert tracker.step([]) == []  # a detection misses it after 21 frames > 3: it is gone

    tracker = IoUTracker(max_missed_frames=3)
    tracker.step([(10, 10, 50, 50)])
    tracker.step([(10, 10, 50, 50)])
    for _ in range(3):  # detections that miss it for up to max_missed_frames are tolerated
        assert len(tracker.step([])) == 1
    assert tracker.step([]) == []


def test_with_min_hits_1_a_track_outlives_missed_detections_up_to_max_missed_frames():
    tracker = IoUTracker(max_missed_frames=3, min_hits=1)
    assert [t.track_id for t in tracker.step([(10, 10, 50, 50)])] == [1]
    for _ in range(3):
        assert len(tracker.step([])) == 1
    assert tracker.step([]) == []


def test_box_smoothing_damps_jitter():
    tracker = IoUTracker(box_weight=0.5, min_hits=1)
    tracker.step([(100, 100, 50, 50)])
    (track,) = tracker.step([(110, 100, 50, 50)])
    assert track.box == (105, 100, 50, 50)


def test_probability_smoothing_is_time_based_and_stays_a_distribution():
    tracker = IoUTracker(time_constant=0.2, min_hits=1)
    (track,) = tracker.step([(0, 0, 10, 10)])
    first = np.eye(7, dtype=np.float32)[3]
    np.testing.assert_array_equal(tracker.smooth_probabilities(track, first, 0.0), first)
    second = np.eye(7, dtype=np.float32)[0]
    smoothed = tracker.smooth_probabilities(track, second, 0.2)  # one time constant later
    weight = 1 - np.exp(-1)
    assert smoothed[0] == pytest.approx(weight, abs=1e-6)
    assert smoothed[3] == pytest.approx(1 - weight, abs=1e-6)
    assert smoothed.sum() == pytest.approx(1.0) and smoothed.dtype == np.float32
    # The same time gap gives the same weight whatever the frame rate.
    half_step = smoothing_weight(0.05, 0.2, 0.5)
    assert smoothing_weight(0.1, 0.2, 0.5) == pytest.approx(1 - (1 - half_step) ** 2)
    assert smoothing_weight(None, 0.2, 0.5) == 0.5


def test_misses_count_detections_not_frames():
    tracker = IoUTracker(max_missed_frames=10)
    tracker.step([(10, 10, 50, 50)])
    (track,) = tracker.step([(10, 10, 50, 50)])
    tracker.step(None)  # a frame without detection is no miss
    assert (track.misses, track.frames_since_seen) == (0, 1)
    tracker.step([])
    assert (track.misses, track.frames_since_seen) == (1, 2)
    tracker.step([(12, 10, 50, 50)])
    assert (track.misses, track.frames_since_seen) == (0, 0)
