"""The real-time video path: the reader and writer threads keep every frame in order, the
tracking-first pipeline keeps a group's faces, and a face that leaves and returns is found."""

import csv
import threading
import time

import cv2
import numpy as np
import pytest

from emotion.video import pipeline
from emotion.video.loop import FrameReader, FrameWriter
from emotion.video.sources import Frame
from tests.conftest import SHARED_DATA

MEDIA = SHARED_DATA / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found at {MEDIA}")


class CountingSource:
    """Stands in for a VideoSource: frames whose pixels say their index."""

    def __init__(self, n, delay=0.0):
        self.n, self.delay = n, delay

    def frames(self, max_frames=None):
        for i in range(self.n if max_frames is None else min(self.n, max_frames)):
            time.sleep(self.delay)
            yield Frame(i, i / 30, np.full((8, 8, 3), i, np.uint8))


class Fake:
    def predict_faces(self, crops):
        return np.full((len(crops), 7), 1 / 7, np.float32)


def test_the_reader_gives_every_frame_once_in_order_however_slow_the_consumer():
    reader = FrameReader(CountingSource(40), depth=3)
    seen = []
    for frame in reader:
        time.sleep(0.001)
        seen.append(frame.index)
    reader.stop()
    assert seen == list(range(40)) and reader.dropped == 0


def test_a_live_reader_drops_stale_frames_and_counts_them():
    reader = FrameReader(CountingSource(30, delay=0.002), drop_stale=True)
    seen = []
    for frame in reader:
        time.sleep(0.02)  # a pipeline ten times slower than the camera
        seen.append(frame.index)
    reader.stop()
    assert seen == sorted(seen) and seen[-1] == 29  # in order, and the newest one reached
    assert reader.dropped > 0 and len(seen) + reader.dropped == 30


def test_the_reader_hands_on_the_sources_error_and_stop_ends_a_blocked_thread():
    class Broken(CountingSource):
        def frames(self, max_frames=None):
            yield from super().frames(2)
            raise OSError("camera unplugged")

    with pytest.raises(OSError, match="unplugged"):
        list(FrameReader(Broken(5)))
    reader = FrameReader(CountingSource(1000), depth=2)  # nobody reads: the thread blocks
    reader.stop()
    assert not any(t.name == "frame-reader" and t.is_alive() for t in threading.enumerate())


def test_the_writer_writes_every_frame_in_order(tmp_path):
    path = tmp_path / "numbered.avi"
    writer = FrameWriter(path, 10.0, (32, 32))
    for i in range(25):
        writer.write(np.full((32, 32, 3), i * 10, np.uint8))
    writer.close()
    capture, levels = cv2.VideoCapture(str(path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        levels.append(image.mean())
    assert len(levels) == 25
    assert np.allclose(levels, np.arange(25) * 10, atol=4)  # each frame once, in order


@needs_media
def test_group_pan_keeps_all_six_faces_under_six_to_eight_ids(tmp_path):
    capture = cv2.VideoCapture(str(MEDIA / "group_pan.mp4"))
    faces = pipeline.FacePipeline(Fake())  # as `emotion video` runs it: parts, rotations
    counts, ids = [], set()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        results = faces.process(frame)
        counts.append(len(results))
        ids.update(r.track_id for r in results)
    assert len(counts) == 240
    assert np.mean(np.array(counts) >= 6) >= 0.9
    assert 6 <= len(ids) <= 8


@needs_media
def test_a_face_tilting_to_40_degrees_and_back_keeps_its_track():
    # single_face.jpg on a reflected border, rolled by 40 sin(pi t / 2 s) at 30 fps: past the
    # upright cascade's reach, so only the rotated window search keeps the track (a clip
    # nobody tuned for; the pipeline as `emotion video` runs it).
    image = cv2.copyMakeBorder(cv2.imread(str(MEDIA / "single_face.jpg")), 100, 100, 200, 200,
                               cv2.BORDER_REFLECT)
    h, w = image.shape[:2]
    faces = pipeline.FacePipeline(Fake())
    counts, ids, rolls = [], set(), []
    for i in range(120):
        angle = 40 * np.sin(np.pi * i / 60)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        results = faces.process(cv2.warpAffine(image, matrix, (w, h),
                                               borderMode=cv2.BORDER_REFLECT), i / 30)
        counts.append(len(results))
        ids.update(r.track_id for r in results)
        rolls += [(angle, r.roll) for r in results if r.roll is not None]
    assert counts == [1] * 120 and ids == {1}
    # The roll follows the tilt where it was measured (OpenCV's positive angle turns the
    # picture counter-clockwise: a negative roll in emotion.face.pose's convention).
    assert rolls and all(abs(roll + angle) < 15 for angle, roll in rolls if abs(angle) > 25)


@needs_media
def test_a_face_that_leaves_is_found_again_after_it_returns():
    frame = cv2.imread(str(MEDIA / "single_face.jpg"))
    blank = np.zeros_like(frame)
    faces = pipeline.FacePipeline(Fake(), detect_every=10, align=False)
    shown = [frame] * 5 + [blank] * 15 + [frame] * 12
    found = [len(faces.process(image)) for image in shown]
    assert found[:5] == [1] * 5
    assert found[18:20] == [0, 0]                  # gone after the tracker gave up on it
    first_back = found.index(1, 20)
    assert first_back < 20 + 10 and all(found[first_back:])  # found within one scan interval


class SpyDetector:
    """A FaceDetector stand-in that finds one fixed face, wherever and whenever asked, except
    in the windows of the frames listed in `miss_near` (a face that turned away)."""

    def __init__(self, miss_near=()):
        from emotion.face.detector import VIDEO_CONFIG

        self.config, self.calls, self.miss_near, self.frame = VIDEO_CONFIG, [], set(miss_near), 0

    def detect(self, gray):
        self.calls.append((self.frame, "scan"))
        return [(40, 40, 60, 60)]

    def detect_near(self, gray, box):
        self.calls.append((self.frame, "window"))
        return [] if self.frame in self.miss_near else [(40, 40, 60, 60)]


def run_spy(spy, frames, **options):
    faces = pipeline.FacePipeline(Fake(), detector=spy, align=False, **options)
    for i in range(frames):
        spy.frame = i
        faces.process(np.zeros((160, 160), np.uint8))
    return spy.calls


def test_windows_are_searched_every_near_every_frames_between_scans():
    calls = run_spy(SpyDetector(), 21, detect_every=10, near_every=2)
    assert [f for f, kind in calls if kind == "scan"] == [0, 10, 20]
    assert [f for f, kind in calls if kind == "window"] == [2, 4, 6, 8, 12, 14, 16, 18]
    calls = run_spy(SpyDetector(), 6, detect_every=10, near_every=1)
    assert [f for f, kind in calls if kind == "window"] == [1, 2, 3, 4, 5]


def test_a_face_its_window_misses_is_looked_for_again_then_scanned_for():
    # Missed once in its window (frame 4): its window again on the very next frame, which
    # finds it, so no scan before frame 10.
    calls = run_spy(SpyDetector(miss_near={4}), 8, detect_every=10, near_every=2)
    assert [f for f, kind in calls if kind == "scan"] == [0]
    assert [f for f, kind in calls if kind == "window"] == [2, 4, 5, 6]
    # Missed twice in a row (frames 4 and 5): the whole of frame 6 is scanned, not frame 10.
    calls = run_spy(SpyDetector(miss_near={4, 5}), 8, detect_every=10, near_every=2)
    assert [f for f, kind in calls if kind == "scan"] == [0, 6]


class FrameSpy:
    """A cloneable FaceDetector stand-in for the scan on a worker thread (emotion.video.lagged):
    the frame's pixel value says its index; a tracked face at (40, 40) is always there, and a
    second face at (200, 40) from frame `appears` on, which only a scan can find. Its scans
    take `delay` seconds, to show that the result does not depend on how long they take;
    the scan of frame `fail_at` raises."""

    def __init__(self, appears, delay=0.0, fail_at=None):
        from emotion.face.detector import VIDEO_CONFIG

        self.config, self.appears, self.delay = VIDEO_CONFIG, appears, delay
        self.fail_at = fail_at
        self.scanned = []  # (frame scanned, on the main thread?)

    def clone(self):
        return self

    def detect(self, gray):
        time.sleep(self.delay)
        frame = int(gray[0, 0])
        if frame == self.fail_at:
            raise RuntimeError(f"scan of frame {frame} failed")
        self.scanned.append((frame, threading.current_thread() is threading.main_thread()))
        return [(40, 40, 60, 60)] + ([(200, 40, 60, 60)] if frame >= self.appears else [])

    def detect_near(self, gray, box):
        return [box]


def run_frame_spy(spy, frames, **options):
    faces = pipeline.FacePipeline(Fake(), detector=spy, align=False, **options)
    return [sorted(r.box for r in faces.process(np.full((160, 320), i, np.uint8)))
            for i in range(frames)]


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_a_scan_runs_beside_the_frames_and_its_new_faces_join_scan_lag_frames_later(delay):
    spy = FrameSpy(appears=12, delay=delay)
    boxes = run_frame_spy(spy, 30, detect_every=10, scan_lag=3)
    # Frame 0 has no track yet: scanned in place. Later scans run on the worker.
    assert spy.scanned == [(0, True), (10, False), (20, False)]
    # The face that appears at frame 12 is first scanned at frame 20, merged at frame 23;
    # it is tentative until its window finds it again (frame 24), then reported.
    second = [i for i, b in enumerate(boxes) if (200, 40, 60, 60) in b]
    assert second[0] == 24 and second == list(range(24, 30))
    assert all((40, 40, 60, 60) in b for b in boxes)  # the tracked face in every frame


def test_scan_lag_0_scans_in_place_and_finds_a_new_face_at_once():
    spy = FrameSpy(appears=12)
    boxes = run_frame_spy(spy, 30, detect_every=10, scan_lag=0)
    assert spy.scanned == [(0, True), (10, True), (20, True)]
    # Scanned at frame 20, confirmed by its window at frame 22 (windows every 2nd frame).
    assert [i for i, b in enumerate(boxes) if (200, 40, 60, 60) in b][0] == 22


def test_the_worker_scan_gives_the_same_faces_however_long_it_takes():
    quick = run_frame_spy(FrameSpy(5), 40)
    assert quick == run_frame_spy(FrameSpy(5, delay=0.03), 40)
    assert any((200, 40, 60, 60) in boxes for boxes in quick)  # the scan's face was merged


class JumpingFace(FrameSpy):
    """One face at (40, 40) that jumps to (200, 40) at frame `jump`: out of its window,
    which sees only a face within 50 px of the box it searches around."""

    def __init__(self, jump, fail_at=None):
        super().__init__(appears=10**9, fail_at=fail_at)
        self.jump = jump

    def face(self, gray):
        return (40, 40, 60, 60) if int(gray[0, 0]) < self.jump else (200, 40, 60, 60)

    def detect(self, gray):
        super().detect(gray)  # records the scan
        return [self.face(gray)]

    def detect_near(self, gray, box):
        face = self.face(gray)
        return [face] if abs(face[0] - box[0]) < 50 and abs(face[1] - box[1]) < 50 else []


@pytest.mark.parametrize("scan_lag", [0, 9])
def test_a_lost_face_is_rescanned_at_once_with_or_without_the_worker(scan_lag):
    spy = JumpingFace(jump=13)
    boxes = run_frame_spy(spy, 30, detect_every=10, scan_lag=scan_lag)
    # Windows (every 2nd frame) miss it at 14 and on the retry at 15: the whole of frame 16
    # is scanned, on the main thread even while the worker has the periodic scan of frame
    # 10 in flight; the new track is confirmed by its window at 17.
    assert (16, True) in spy.scanned
    assert [i for i, b in enumerate(boxes) if (200, 40, 60, 60) in b][0] == 17


def test_a_superseded_worker_scan_is_waited_for_and_its_error_raised():
    faces = pipeline.FacePipeline(Fake(), detector=JumpingFace(jump=13, fail_at=10), align=False,
                                  detect_every=10, scan_lag=9)
    for i in range(16):  # the worker's scan of frame 10 fails; it is due only at frame 19
        faces.process(np.full((160, 320), i, np.uint8))
    with pytest.raises(RuntimeError, match="frame 10 failed"):
        faces.process(np.full((160, 320), 16, np.uint8))  # the rescan supersedes it: taken


def test_a_failed_worker_scan_is_raised_on_the_main_thread():
    with pytest.raises(RuntimeError, match="frame 10 failed"):
        run_frame_spy(FrameSpy(appears=10**9, fail_at=10), 30, detect_every=10, scan_lag=3)


def test_the_worker_is_used_only_with_the_window_search_and_a_detector_of_its_own():
    from emotion.face.detector import VIDEO_CONFIG, FaceDetector

    detector = FaceDetector(VIDEO_CONFIG)
    copy = detector.clone()
    assert copy.cascade is not detector.cascade and copy.config == detector.config
    faces = pipeline.FacePipeline(Fake(), detector=detector, align=False)
    assert faces.ahead is not None and faces.ahead.work.__self__.cascade is not detector.cascade
    # Without the window search the scans' boxes are all there is: never lag frames old.
    assert pipeline.FacePipeline(Fake(), detector=detector, align=False, local=False).ahead is None


def test_a_scanned_face_the_windows_already_have_is_not_added_twice():
    from emotion.face.detector import new_faces

    found = [(100, 100, 60, 60)]
    scanned = [(108, 104, 60, 60), (300, 100, 50, 50)]  # the first moved 8 px since the scan
    assert new_faces(scanned, found, max_overlap=0.4) == [(300, 100, 50, 50)]
    assert new_faces(scanned, [], max_overlap=0.4) == scanned


@needs_media
@pytest.mark.parametrize("clip", ["woman_talking.mp4", "woman_smiling_phone.mp4"])
def test_the_face_of_each_single_person_clip_is_kept_in_every_frame(clip):
    capture = cv2.VideoCapture(str(MEDIA / clip))
    faces = pipeline.FacePipeline(Fake())
    counts = []
    while len(counts) < 120:
        ok, frame = capture.read()
        if not ok:
            break
        counts.append(len(faces.process(frame)))
    assert counts and min(counts) >= 1


class SixFaces:
    """Six still faces in a row, found by every scan and window."""

    config = __import__("emotion.face.detector", fromlist=["VIDEO_CONFIG"]).VIDEO_CONFIG
    boxes = [(20 + 50 * i, 40, 40, 40) for i in range(6)]

    def detect(self, gray):
        return list(self.boxes)

    def detect_near(self, gray, box):
        return [box]


class CountingClassifier:
    """Each call's batch size, and probabilities that change with every call."""

    def __init__(self):
        self.batches = []

    def predict_faces(self, crops):
        self.batches.append(len(crops))
        p = np.full((len(crops), 7), 0.1, np.float32)
        p[:, len(self.batches) % 7] = 0.4
        return p


@pytest.mark.parametrize("every", [1, 2, 3])
def test_each_face_is_classified_every_kth_frame_with_the_work_spread_evenly(every):
    classifier = CountingClassifier()
    faces = pipeline.FacePipeline(classifier, detector=SixFaces(), align=False,
                                  classify_every=every)
    seen = [faces.process(np.zeros((120, 360), np.uint8)) for _ in range(13)]
    assert [len(s) for s in seen] == [6] * 13
    # Their first frame: all six at once; then 6/k every frame, each face every k-th frame.
    assert classifier.batches == [6] + [6 // every] * 12
    last = {t.track_id: t.classified_at for t in faces.tracker.tracks}
    assert all(faces.frame_index - 1 - at < every for at in last.values())


@pytest.mark.parametrize("faces_count, every, batches", [
    (1, 2, [1, 0, 1, 0, 1, 0, 1]),  # one face alone: every 2nd frame, not every frame
    (3, 2, [3, 1, 2, 1, 2, 1, 2]),  # an odd count: 1.5 a frame on average
])
def test_few_faces_are_each_classified_every_kth_frame(faces_count, every, batches):
    class Few(SixFaces):
        boxes = SixFaces.boxes[:faces_count]

    classifier = CountingClassifier()
    faces = pipeline.FacePipeline(classifier, detector=Few(), align=False, classify_every=every)
    per_frame = []  # the faces classified on each frame (0: the CNN not called)
    for _ in range(len(batches)):
        before = len(classifier.batches)
        faces.process(np.zeros((120, 360), np.uint8))
        per_frame.append(sum(classifier.batches[before:]))
    assert per_frame == batches


def test_a_face_between_its_classifications_keeps_its_smoothed_probabilities_and_phase():
    faces = pipeline.FacePipeline(CountingClassifier(), detector=SixFaces(), align=False,
                                  classify_every=2)
    before = {r.track_id: r for r in faces.process(np.zeros((120, 360), np.uint8))}
    for _ in range(4):
        after = {r.track_id: r for r in faces.process(np.zeros((120, 360), np.uint8))}
        fresh = {t.track_id for t in faces.tracker.tracks if t.classified_at == faces.frame_index}
        assert len(fresh) == 3 and set(after) == set(before)
        for track_id, result in after.items():
            same = np.array_equal(result.probabilities, before[track_id].probabilities)
            assert same == (track_id not in fresh)  # new values exactly where classified
            if track_id not in fresh:
                assert result.phase == before[track_id].phase
        before = after


def test_classify_every_below_one_is_refused():
    with pytest.raises(ValueError, match="classify_every"):
        pipeline.FacePipeline(Fake(), detector=SixFaces(), align=False, classify_every=0)


class PartsSpy:
    """A cloneable PartsDetector stand-in: the eyes it finds say which frame it looked at
    (the frame's pixel value), and it records (frame, on the main thread?) for each face."""

    def __init__(self, delay=0.0, fail_at=None):
        self.delay, self.fail_at, self.looked = delay, fail_at, []

    def clone(self):
        return self

    def find(self, gray, box):
        from emotion.face.detector import FaceParts

        time.sleep(self.delay)
        frame = int(gray[0, 0])
        if frame == self.fail_at:
            raise RuntimeError(f"parts of frame {frame} failed")
        self.looked.append((frame, threading.current_thread() is threading.main_thread()))
        x, y, w, h = box
        eyes = [(x + 5, y + 5 + frame, 8, 8), (x + w - 13, y + 5, 8, 8)]
        return FaceParts(eyes=eyes, roll=None)


def run_parts_spy(spy, frames, **options):
    faces = pipeline.FacePipeline(Fake(), detector=SixFaces(), parts=spy, **options)
    eyes = []
    for i in range(frames):
        results = faces.process(np.full((120, 360), i, np.uint8))
        # Each face's eyes are its own (PartsSpy puts them at its box's x + 5): a result
        # handed to the wrong track would show here.
        assert all(r.eyes[0][0] == r.box[0] + 5 for r in results)
        eyes.append([r.eyes for r in results])
    return eyes


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_parts_refreshes_run_on_a_worker_and_land_one_frame_later(delay):
    spy = PartsSpy(delay)
    eyes = run_parts_spy(spy, 16, eyes_every=5, classify_every=1)
    # Six new faces at frame 0: found in place. Then, on the frames where the windows see
    # them (every 2nd), the longest-waiting 6/5 -> 2 at a time are refreshed on the worker,
    # each result applied at the next frame: faces 0-1 at frame 6 (applied at 7), 2-3 at 8,
    # 4-5 at 10, then 0-1 again at 12.
    assert sorted(set(spy.looked)) == [(0, True), (6, False), (8, False), (10, False),
                                       (12, False), (14, False)]
    assert all(spy.looked.count((f, False)) == 2 for f in (6, 8, 10, 12, 14))
    found_in = [[row[k][0][1] - 45 for row in eyes] for k in range(6)]  # frame per face
    assert found_in[0] == found_in[1] == [0] * 7 + [6] * 6 + [12] * 3
    assert found_in[2] == found_in[3] == [0] * 9 + [8] * 6 + [14]
    assert found_in[4] == found_in[5] == [0] * 11 + [10] * 5
    assert eyes == run_parts_spy(PartsSpy(), 16, eyes_every=5, classify_every=1)  # no timing


def test_parts_in_place_when_asked_and_a_failed_refresh_is_raised():
    spy = PartsSpy()
    eyes = run_parts_spy(spy, 8, eyes_every=5, parts_ahead=False)
    assert sorted(set(spy.looked)) == [(0, True), (6, True)]
    assert [row[0][0][1] - 45 for row in eyes] == [0] * 6 + [6] * 2  # used where found
    with pytest.raises(RuntimeError, match="frame 6 failed"):
        run_parts_spy(PartsSpy(fail_at=6), 8, eyes_every=5)


def test_parts_detector_clone_has_cascades_of_its_own():
    from emotion.face.detector import PartsDetector

    parts = PartsDetector()
    copy = parts.clone()
    assert copy.eye_cascade is not parts.eye_cascade
    assert copy.smile_cascade is not parts.smile_cascade
    assert (copy.region_width, copy.max_roll) == (parts.region_width, parts.max_roll)
    faces = pipeline.FacePipeline(Fake(), detector=SixFaces())
    assert faces.parts_worker is not faces.parts  # the worker's cascades are not the main's
    assert faces.parts_worker.eye_cascade is not faces.parts.eye_cascade
    assert pipeline.FacePipeline(Fake(), detector=SixFaces(), parts_ahead=False).parts_job is None
