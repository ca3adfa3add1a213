"""Following faces by their landmarks (emotion.video.follow): correctness, not speed.

Most tests run a synthetic world: bright squares ("faces") on a dark frame, a detector that
finds them (and, when asked, a false box), and a landmark model that sees the square in its
crop. The fake model puts a fixed 68-point template on the square it sees, and calls the
crop a face when the square is near its centre: the presence head's job. So the pipeline's
own logic (where the next crop goes, when a track is dropped, when the frame is scanned)
is tested exactly, without trained weights. The tests with the shipped weights on the
shared clips are at the end, skipped with the reason when the media are absent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emotion.face import geometry
from emotion.face import landmarks
from emotion.video import follow

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
LABELS = Path(__file__).resolve().parents[1] / "data" / "landmarks" / "fer2013_mediapipe.npz"


def _template() -> np.ndarray:
    """68 points, left/right symmetric with level eyes, scaled so that frame_box gives
    exactly the unit box (0, 0, 1, 1): the points of a face whose box is (x, y, s, s) are
    (x, y) + s * template."""
    t = np.linspace(0, np.pi, 17)
    points = np.zeros((68, 2))
    points[0:17] = np.stack([0.5 - 0.45 * np.cos(t), 0.45 + 0.5 * np.sin(t)], 1)   # jaw
    points[17:22] = np.stack([np.linspace(0.15, 0.42, 5), np.full(5, 0.3)], 1)      # brows
    points[22:27] = np.stack([np.linspace(0.58, 0.85, 5), np.full(5, 0.3)], 1)
    points[27:36] = np.stack([np.full(9, 0.5), np.linspace(0.4, 0.7, 9)], 1)        # nose
    ring = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    points[36:42] = np.stack([0.3 + 0.08 * np.cos(ring), 0.4 + 0.03 * np.sin(ring)], 1)
    points[42:48] = np.stack([0.7 - 0.08 * np.cos(ring), 0.4 + 0.03 * np.sin(ring)], 1)
    lips = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    points[48:68] = np.stack([0.5 + 0.15 * np.cos(lips), 0.82 + 0.05 * np.sin(lips)], 1)
    (x, y, side, _), roll = landmarks.frame_box(points)
    assert abs(roll) < 1e-6
    return (points - [x, y]) / side


TEMPLATE = _template()


def world(faces, size=(240, 320)) -> np.ndarray:
    """A dark BGR frame with a bright square at each (x, y, side)."""
    frame = np.full((*size, 3), 20, np.uint8)
    for x, y, s in faces:
        frame[int(y):int(y + s), int(x):int(x + s)] = 230
    return frame


class SquareDetector:
    """Finds every bright square (and `false_boxes`), counting its calls; no clone(): the
    pipeline scans in place, so a test knows on which frames it ran."""

    def __init__(self, false_boxes=()):
        from emotion.face.detector import VIDEO_CONFIG

        self.config, self.calls, self.false_boxes = VIDEO_CONFIG, 0, list(false_boxes)

    def detect(self, gray):
        import cv2

        self.calls += 1
        count, _, stats, _ = cv2.connectedComponentsWithStats((gray > 128).astype(np.uint8))
        return [tuple(int(v) for v in stats[i, :4]) for i in range(1, count)] + self.false_boxes

    def detect_near(self, gray, box, grow=0.5):
        """The squares near `box` (a false box is never found twice, as the cascade's
        rarely are)."""
        from emotion.video.track import iou

        self.near_calls = getattr(self, "near_calls", 0) + 1
        saved, self.false_boxes, self.calls = self.false_boxes, [], self.calls - 1
        found = [b for b in self.detect(gray) if iou(b, box) > 0.1]
        self.false_boxes = saved
        return found


class SquareLandmarker:
    """predict_geometry(crops): the template on the square seen in each crop, presence 1 when
    the square's centre is within a fifth of the crop of its centre (0 when no square)."""

    def __init__(self):
        self.passes = []

    def predict_geometry(self, crops):
        self.passes.append(len(crops))
        out, presence = [], []
        for crop in crops:
            h, w = crop.shape[:2]
            ys, xs = np.nonzero(crop > 128)
            if len(xs) == 0:
                box = (w / 4, h / 4, w / 2)
            else:
                box = (xs.min(), ys.min(), max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()))
            cx, cy = box[0] + box[2] / 2, box[1] + box[2] / 2
            centred = len(xs) > 0 and abs(cx / w - 0.5) < 0.2 and abs(cy / h - 0.5) < 0.2
            presence.append(1.0 if centred else 0.0)
            points = (np.array(box[:2]) + box[2] * TEMPLATE) * [48 / w, 48 / h]
            out.append(geometry.encode(points[None], np.zeros((1, 3)))[0])
        n = len(crops)
        probabilities = np.tile(np.eye(7, dtype=np.float32)[3], (n, 1))  # always "happy"
        return probabilities, np.array(out, np.float32).reshape(n, -1), np.array(presence, np.float32)

    def predict_faces(self, crops):
        return self.predict_geometry(crops)[0]


def run(frames, detector, landmarker=None, **options):
    landmarker = landmarker or SquareLandmarker()
    faces = follow.FollowPipeline(landmarker, landmarker, detector=detector, **options)
    return faces, [faces.process(frame, i / 30) for i, frame in enumerate(frames)]


def box_iou(a, b):
    from emotion.video.track import iou

    return iou(a, b)


def test_frame_box_is_the_unit_box_of_the_template_moved_scaled_and_rolled():
    (x, y, w, h), roll = landmarks.frame_box(TEMPLATE * 80 + [30, 40])
    assert (x, y, w, h) == pytest.approx((30, 40, 80, 80), abs=1e-6) and roll == pytest.approx(0)
    # Rolled by 20 degrees about the box centre: the same box centre and size, roll 20.
    t = np.radians(20)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    rolled = (TEMPLATE * 80 + [30, 40] - [70, 80]) @ rotation.T + [70, 80]
    (x, y, w, h), roll = landmarks.frame_box(rolled)
    assert roll == pytest.approx(20, abs=1e-6)
    assert (x + w / 2, y + h / 2, w) == pytest.approx((70, 80, 80), abs=1e-6)


def test_a_moving_face_is_followed_by_its_landmarks_between_scans():
    path = [(40 + 4 * i, 60 + 2 * i, 70) for i in range(30)]
    detector = SquareDetector()
    faces, results = run([world([p]) for p in path], detector, detect_every=10, scan_lag=0)
    assert detector.calls == 3  # frames 0, 10 and 20 only
    assert all(len(r) == 1 and r[0].track_id == 1 for r in results)
    for (x, y, s), (r,) in zip(path, results):
        assert box_iou(r.box, (x, y, s, s)) > 0.9
        assert r.landmarks.shape == (68, 2)


def test_a_false_box_is_never_reported():
    frames = [world([(40, 60, 70)]) for _ in range(12)]
    detector = SquareDetector(false_boxes=[(200, 150, 60, 60)])  # empty background there
    faces, results = run(frames, detector, detect_every=5, scan_lag=0)
    assert all(len(r) == 1 and r[0].track_id == 1 for r in results)
    assert [f.track_id for f in faces.faces] == [1]


def test_a_face_that_jumps_away_is_dropped_and_found_again():
    before = [world([(30, 40, 70)]) for _ in range(5)]
    after = [world([(220, 140, 70)]) for _ in range(10)]
    detector = SquareDetector()
    faces, results = run(before + after, detector, detect_every=100, scan_lag=0)
    assert [len(r) for r in results[:5]] == [1] * 5
    # The crop at the old place holds no face: the track is held for DROP_AFTER - 1 frames,
    # dropped at the DROP_AFTER-th, and the frame after that is scanned whole.
    held = follow.DROP_AFTER - 1
    for r in results[5:5 + held]:
        assert [x.track_id for x in r] == [1] and box_iou(r[0].box, (30, 40, 70, 70)) > 0.9
    assert results[5 + held] == []
    found = results[5 + held + 1]  # rescanned at once
    assert [x.track_id for x in found] == [2] and box_iou(found[0].box, (220, 140, 70, 70)) > 0.9
    assert detector.calls == 2  # the first frame's scan and the rescan


def test_a_new_box_must_look_like_a_face_beyond_doubt_to_be_followed():
    class Unsure(SquareLandmarker):
        """The square at (200, 120) scores just under NEW_MIN_PRESENCE (as the cascade's
        false boxes do), however well it is framed."""

        def predict_geometry(self, crops):
            probabilities, geometry_, presence = super().predict_geometry(crops)
            for i, crop in enumerate(crops):
                if crop.shape[1] == round(60 * 1.3):  # the 60 px square's crop
                    presence[i] = min(presence[i], follow.NEW_MIN_PRESENCE - 0.01)
            return probabilities, geometry_, presence

    frames = [world([(30, 40, 50)] + ([(200, 120, 60), (120, 150, 40)] if i >= 3 else []))
              for i in range(8)]
    faces, results = run(frames, SquareDetector(), Unsure(), detect_every=5, scan_lag=0)
    assert [len(r) for r in results] == [1, 1, 1, 1, 1, 2, 2, 2]  # scanned at frame 5
    assert box_iou(results[5][1].box, (120, 150, 40, 40)) > 0.9   # the unsure one never


def test_two_faces_keep_their_ids_while_crossing_paths_apart():
    frames = [world([(20 + 5 * i, 50, 60), (240 - 5 * i, 150, 60)]) for i in range(20)]
    faces, results = run(frames, SquareDetector(), detect_every=10, scan_lag=0)
    for i, r in enumerate(results):
        by_id = {x.track_id: x.box for x in r}
        assert set(by_id) == {1, 2}
        assert box_iou(by_id[1], (20 + 5 * i, 50, 60, 60)) > 0.85
        assert box_iou(by_id[2], (240 - 5 * i, 150, 60, 60)) > 0.85


def test_another_classifier_reads_each_face_every_classify_every_frames():
    class Counting:
        def __init__(self):
            self.crops = 0

        def predict_faces(self, crops):
            self.crops += len(crops)
            return np.tile(np.eye(7, dtype=np.float32)[0], (len(crops), 1))

    counting, landmarker = Counting(), SquareLandmarker()
    frames = [world([(30, 40, 60), (200, 120, 60)]) for _ in range(10)]
    faces = follow.FollowPipeline(counting, landmarker, detector=SquareDetector(),
                                  classify_every=2, scan_lag=0)
    results = [faces.process(f, i / 30) for i, f in enumerate(frames)]
    assert landmarker.passes == [2] * 10  # the landmarks every frame, both faces at once
    assert counting.crops == 2 + 9        # both at first, then one of the two each frame
    assert all(x.emotion == "angry" for r in results for x in r)


def test_the_options_are_checked():
    with pytest.raises(ValueError):
        follow.FollowPipeline(None, None, detector=SquareDetector(), detect_every=0)


def test_the_framing_constants_are_the_detectors_box_on_fer2013_faces():
    """FRAME_SIDE and FRAME_OFFSET, measured again (benchmarks/frame_box.py) on 400 FER2013
    faces and the teacher's labels (made by emotion/training/landmark_teacher.py; absent in
    CI): within the sampling noise of the medians."""
    from benchmarks import frame_box

    if not LABELS.is_file() or not frame_box.DATA.is_file():
        pytest.skip(f"no teacher labels at {LABELS} or no FER2013 at {frame_box.DATA}")
    measured = frame_box.measure(faces=400, seed=1)
    assert measured["faces"] >= 250
    assert measured["side"] == pytest.approx(landmarks.FRAME_SIDE, rel=0.04)
    assert measured["offset_x"] == pytest.approx(landmarks.FRAME_OFFSET[0], abs=0.04)
    assert measured["offset_y"] == pytest.approx(landmarks.FRAME_OFFSET[1], abs=0.04)


def test_classify_every_and_scan_lag_below_their_least_are_refused():
    for wrong in ({"classify_every": 0}, {"scan_lag": -1}):
        with pytest.raises(ValueError, match="classify_every"):
            follow.FollowPipeline(None, None, detector=SquareDetector(), **wrong)


# -- the scan on a worker (emotion.video.lagged) ------------------------------------------

def squares(gray):
    """The (x, y, w, h) of each bright square of a frame."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats((gray > 128).astype(np.uint8))
    return [tuple(int(v) for v in stats[i, :4]) for i in range(1, count)]


class ScanSpy:
    """A cloneable detector of bright squares, for the scan on a worker: it records each scan
    as (frame scanned, on the main thread?), the frame's index read from its pixel (0, 0)
    (`numbered`). Its scans take `delay` seconds, to show that the result does not depend on
    how long they take; the scan of frame `fail_at` raises."""

    def __init__(self, delay=0.0, fail_at=None):
        from emotion.face.detector import VIDEO_CONFIG

        self.config, self.delay, self.fail_at, self.scanned = VIDEO_CONFIG, delay, fail_at, []

    def clone(self):
        return self

    def detect(self, gray):
        time.sleep(self.delay)
        frame = int(gray[0, 0])
        if frame == self.fail_at:
            raise RuntimeError(f"scan of frame {frame} failed")
        self.scanned.append((frame, threading.current_thread() is threading.main_thread()))
        return squares(gray)

    def detect_near(self, gray, box, grow=0.5):
        return [b for b in squares(gray) if box_iou(b, box) > 0.1]


def numbered(faces, index):
    """world(faces) whose pixel (0, 0) says its index (dark: never a square)."""
    frame = world(faces)
    frame[0, 0] = index
    return frame


A, B = (30, 40, 60), (200, 120, 60)  # a face there from the start; one that only a scan finds
B_BOX = (200, 120, 60, 60)


def run_scans(spy, count, appears, **options):
    """Each frame's (track ID, box) pairs, sorted: A always, B from frame `appears` on."""
    faces = follow.FollowPipeline(*[SquareLandmarker()] * 2, detector=spy, **options)
    return [sorted((r.track_id, r.box) for r in
                   faces.process(numbered([A] + ([B] if i >= appears else []), i), i / 30))
            for i in range(count)]


def with_b(frames):
    """The frames in which B is reported."""
    return [i for i, pairs in enumerate(frames) if any(box_iou(box, B_BOX) > 0.9
                                                        for _, box in pairs)]


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_a_scan_runs_beside_the_frames_and_its_new_faces_join_scan_lag_frames_later(delay):
    spy = ScanSpy(delay)
    frames = run_scans(spy, 30, appears=12, detect_every=10, scan_lag=3)
    # Frame 0 has no face followed yet: scanned in place. The later scans run on the worker.
    assert spy.scanned == [(0, True), (10, False), (20, False)]
    # B appears at frame 12, is first scanned at frame 20 and joins at frame 23, found again
    # there near the scan's box; from then on it is followed.
    assert with_b(frames) == list(range(23, 30))
    assert all(len(pairs) >= 1 and pairs[0][0] == 1 for pairs in frames)  # A in every frame


def test_scan_lag_0_scans_in_place_and_finds_a_new_face_at_once():
    spy = ScanSpy()
    frames = run_scans(spy, 30, appears=12, detect_every=10, scan_lag=0)
    assert spy.scanned == [(0, True), (10, True), (20, True)]
    assert with_b(frames) == list(range(20, 30))


def test_the_worker_scan_gives_the_same_faces_however_long_it_takes():
    quick = run_scans(ScanSpy(), 40, appears=5)  # the defaults: a scan every 10, lag 9
    assert quick == run_scans(ScanSpy(delay=0.03), 40, appears=5)
    assert with_b(quick) == list(range(19, 40))  # scanned at frame 10, joined at 19


def jumping(count, jump):
    """Frames of one face at A that jumps to B at frame `jump`: its crop at A then holds no
    face, so it is dropped DROP_AFTER frames later and the next frame is scanned whole."""
    return [numbered([A if i < jump else B], i) for i in range(count)]


@pytest.mark.parametrize("scan_lag", [0, 9])
def test_a_lost_face_is_rescanned_at_once_with_or_without_the_worker(scan_lag):
    spy = ScanSpy()
    faces = follow.FollowPipeline(*[SquareLandmarker()] * 2, detector=spy, detect_every=10,
                                  scan_lag=scan_lag)
    found = [faces.process(frame, i / 30) for i, frame in enumerate(jumping(30, 13))]
    rescan = 13 + follow.DROP_AFTER  # dropped at frame 15, the whole of frame 16 scanned
    # on the main thread, even while the worker has the periodic scan of frame 10 in flight
    assert (rescan, True) in spy.scanned and (10, scan_lag == 0) in spy.scanned
    assert found[rescan - 1] == []
    assert all([r.track_id for r in found[i]] == [2] for i in range(rescan, 30))
    assert box_iou(found[rescan][0].box, B_BOX) > 0.9


def test_a_superseded_worker_scan_is_waited_for_and_its_error_raised():
    faces = follow.FollowPipeline(*[SquareLandmarker()] * 2, detector=ScanSpy(fail_at=10),
                                  detect_every=10, scan_lag=9)
    frames = jumping(17, 13)
    for i in range(16):  # the worker's scan of frame 10 fails; it is due only at frame 19
        faces.process(frames[i], i / 30)
    with pytest.raises(RuntimeError, match="frame 10 failed"):
        faces.process(frames[16], 16 / 30)  # the rescan supersedes it: taken, and raised


def test_a_failed_worker_scan_is_raised_on_the_main_thread():
    with pytest.raises(RuntimeError, match="frame 10 failed"):
        run_scans(ScanSpy(fail_at=10), 30, appears=10**9, detect_every=10, scan_lag=3)


def test_the_worker_scans_with_a_detector_of_its_own():
    from emotion.face.detector import VIDEO_CONFIG, FaceDetector

    detector = FaceDetector(VIDEO_CONFIG)
    copy = detector.clone()
    assert copy.cascade is not detector.cascade and copy.config == detector.config
    faces = follow.FollowPipeline(None, None, detector=detector)
    assert faces.ahead is not None and faces.ahead.work.__self__.cascade is not detector.cascade
    assert follow.FollowPipeline(None, None, detector=detector, scan_lag=0).ahead is None


# -- another classifier than the landmark model: each face every classify_every frames -----

SIX = [(20 + 75 * i, 40, 40) for i in range(6)]  # six still faces in a row


class CountingClassifier:
    """Each call's batch size, and probabilities that change with every call."""

    def __init__(self):
        self.batches = []

    def predict_faces(self, crops):
        self.batches.append(len(crops))
        p = np.full((len(crops), 7), 0.1, np.float32)
        p[:, len(self.batches) % 7] = 0.4
        return p


def six_faces(classifier, count, faces=SIX, **options):
    pipeline = follow.FollowPipeline(classifier, SquareLandmarker(), detector=SquareDetector(),
                                     scan_lag=0, **options)
    frame = world(faces, size=(160, 480))
    return pipeline, [pipeline.process(frame, i / 30) for i in range(count)]


@pytest.mark.parametrize("every", [1, 2, 3])
def test_each_face_is_classified_every_kth_frame_with_the_work_spread_evenly(every):
    classifier = CountingClassifier()
    faces, seen = six_faces(classifier, 13, classify_every=every)
    assert [len(s) for s in seen] == [6] * 13
    # Their first frame: all six at once; then 6/k every frame, each face every k-th frame.
    assert classifier.batches == [6] + [6 // every] * 12
    assert all(faces.frame_index - 1 - f.classified_at < every for f in faces.faces)


@pytest.mark.parametrize("count, every, per_frame", [
    (1, 2, [1, 0, 1, 0, 1, 0, 1]),  # one face alone: every 2nd frame, not every frame
    (3, 2, [3, 1, 2, 1, 2, 1, 2]),  # an odd count: 1.5 a frame on average
])
def test_few_faces_are_each_classified_every_kth_frame(count, every, per_frame):
    classifier = CountingClassifier()
    faces = follow.FollowPipeline(classifier, SquareLandmarker(), detector=SquareDetector(),
                                  scan_lag=0, classify_every=every)
    frame, read = world(SIX[:count], size=(160, 480)), []
    for i in range(len(per_frame)):
        before = sum(classifier.batches)
        assert len(faces.process(frame, i / 30)) == count
        read.append(sum(classifier.batches) - before)  # 0: the classifier not called
    assert read == per_frame


def test_a_face_between_its_classifications_keeps_its_smoothed_probabilities_and_phase():
    faces = follow.FollowPipeline(CountingClassifier(), SquareLandmarker(),
                                  detector=SquareDetector(), scan_lag=0, classify_every=2)
    frame = world(SIX, size=(160, 480))
    before = {r.track_id: r for r in faces.process(frame, 0.0)}
    for i in range(1, 5):
        after = {r.track_id: r for r in faces.process(frame, i / 30)}
        fresh = {f.track_id for f in faces.faces if f.classified_at == faces.frame_index - 1}
        assert len(fresh) == 3 and set(after) == set(before)
        for track_id, result in after.items():
            same = np.array_equal(result.probabilities, before[track_id].probabilities)
            assert same == (track_id not in fresh)  # new values exactly where classified
            if track_id not in fresh:
                assert result.phase == before[track_id].phase
        before = after


# -- with the shipped landmark model, on the shared media ---------------------------------
needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found at {MEDIA}")


@pytest.fixture(scope="module")
def landmark_model():
    from emotion.video import pipeline

    return pipeline.load_landmarker(None)


def run_clip(frames, model, **options):
    faces = follow.FollowPipeline(model, model, **options)
    return [faces.process(frame, i / 30) for i, frame in enumerate(frames)]


def clip_frames(name, limit=None):
    import cv2

    capture = cv2.VideoCapture(str(MEDIA / name))
    frames = []
    while limit is None or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@needs_media
def test_group_pan_keeps_all_six_faces_under_six_ids(landmark_model):
    results = run_clip(clip_frames("group_pan.mp4"), landmark_model)
    assert len(results) == 240
    counts = np.array([len(r) for r in results])
    assert np.mean(counts == 6) >= 0.98  # issue 32: all six in >= 98% of the frames
    assert {x.track_id for r in results for x in r} == {1, 2, 3, 4, 5, 6}


@needs_media
@pytest.mark.parametrize("clip", ["woman_talking.mp4", "woman_smiling_phone.mp4"])
def test_the_face_of_each_single_person_clip_is_kept_in_every_frame(landmark_model, clip):
    results = run_clip(clip_frames(clip, 150), landmark_model)
    assert [len(r) for r in results] == [1] * len(results)
    assert {x.track_id for r in results for x in r} == {1}


@needs_media
def test_a_face_tilting_to_40_degrees_and_back_keeps_its_track_and_its_roll(landmark_model):
    # single_face.jpg on a reflected border, rolled by 40 sin(pi t / 2 s) at 30 fps: past the
    # upright cascade's reach, so only the landmarks (each crop levelled by the last roll)
    # keep the track.
    import cv2

    image = cv2.copyMakeBorder(cv2.imread(str(MEDIA / "single_face.jpg")), 100, 100, 200, 200,
                               cv2.BORDER_REFLECT)
    h, w = image.shape[:2]
    frames, angles = [], []
    for i in range(120):
        angle = 40 * np.sin(np.pi * i / 60)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        frames.append(cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT))
        angles.append(angle)
    results = run_clip(frames, landmark_model)
    assert [len(r) for r in results] == [1] * 120
    assert {x.track_id for r in results for x in r} == {1}
    # OpenCV's positive angle turns the picture counter-clockwise: a negative roll in
    # emotion.face.pose's convention. The reported roll is smoothed over 0.05 s
    # (follow.POSE_TIME_CONSTANT): 3 degrees of lag at the turn's fastest, 63 degrees a
    # second.
    errors = [abs(r[0].roll + angle) for r, angle in zip(results, angles)]
    assert np.median(errors) < 4 and max(errors) < 8


@needs_media
def test_a_face_that_leaves_is_dropped_and_found_again_after_it_returns(landmark_model):
    import cv2

    frame = cv2.imread(str(MEDIA / "single_face.jpg"))
    shown = [frame] * 5 + [np.zeros_like(frame)] * 10 + [frame] * 15
    found = [len(r) for r in run_clip(shown, landmark_model, detect_every=10)]
    assert found[:5] == [1] * 5
    # On the blank frames the crop holds no face: held DROP_AFTER - 1 frames, then dropped.
    assert found[5:5 + follow.DROP_AFTER - 1] == [1] * (follow.DROP_AFTER - 1)
    assert found[5 + follow.DROP_AFTER:15] == [0] * (10 - follow.DROP_AFTER)
    first_back = found.index(1, 15)
    assert first_back < 15 + 10 and all(found[first_back:])  # within one scan interval


@needs_media
def test_the_presence_head_tells_a_framed_face_from_a_crop_beside_it(landmark_model):
    """On the shared photos' faces (the photo detector's boxes): the crop on the box is a
    face; the crop moved 0.6 of a box aside (0.46 of the crop, past the 0.4 of the training's
    negatives: emotion.training.presence.MIN_OFFSET), or blown up on a quarter of the box,
    is not."""
    import cv2

    from emotion.face.landmarks import face_crop
    from emotion.video import pipeline

    detector, _ = pipeline.photo_detectors()
    framed, aside, close = [], [], []
    for photo in ("single_face.jpg", "two_faces.jpg", "group_selfie.jpg"):
        gray = cv2.cvtColor(cv2.imread(str(MEDIA / photo)), cv2.COLOR_BGR2GRAY)
        for x, y, w, h in detector.detect(gray):
            framed.append(face_crop(gray, (x, y, w, h)).image)
            for dx, dy in ((0.6, 0), (-0.6, 0), (0, 0.6), (0, -0.6)):
                aside.append(face_crop(gray, (x + dx * w, y + dy * h, w, h)).image)
            close.append(face_crop(gray, (x, y + h / 2, w / 2, h / 2)).image)
    _, _, on_faces = landmark_model.predict_geometry(framed)
    _, _, on_aside = landmark_model.predict_geometry(aside)
    _, _, on_close = landmark_model.predict_geometry(close)
    assert len(framed) >= 9
    # What the pipeline relies on: a framed face starts a track (NEW_MIN_PRESENCE), a crop
    # beside it or too close never does; a followed face whose crop slid aside is dropped
    # (below MIN_PRESENCE). Measured with the shipped weights (2026-12-08): all 9 faces
    # at 0.999 or more; 32 of the 36 crops aside under 0.5, none over 0.92; the close crops
    # 0.01-0.84 (5 of 9 under 0.5: a quarter of a face blown up still looks like one to it,
    # which is why a box that shrinks or jumps in size is not trusted either).
    assert (on_faces >= follow.NEW_MIN_PRESENCE).all()
    assert (on_aside < follow.NEW_MIN_PRESENCE).all() and (on_close < follow.NEW_MIN_PRESENCE).all()
    assert np.mean(on_aside < follow.MIN_PRESENCE) >= 0.85


@needs_media
def test_tracked_faces_agree_with_each_frame_analysed_alone(landmark_model):
    """The issue's check: emotion, pose and points of the followed faces against the photo
    path on each frame (benchmarks.follow_agreement), within the landmark model's own error
    against its teacher (NME about 6%, pose about 3.5 degrees: the README)."""
    from benchmarks.follow_agreement import agreement

    row = agreement(MEDIA / "woman_talking.mp4", landmark_model, landmark_model, frames=60)
    assert row["pairs"] == 60 and row["followed_only"] == 0 and row["photo_only"] == 0
    assert row["nme_median"] < 0.06
    assert max(row["pose_mae"]) < 3.5
    assert row["same_emotion"] >= 0.8
