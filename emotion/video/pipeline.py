"""The real-time face pipeline: detect -> track -> align and crop -> classify -> smooth.

    frame (BGR) --gray--> FaceDetector: the whole frame every k-th frame, and at once when a
                          track is lost; in between, each track's neighbourhood only
        --> IoUTracker (every frame) --> PartsDetector (eyes, eyebrows, mouth) and the head
            pose (emotion.face.pose), every few frames per track
        --> align_face / crop --> classifier.predict_faces(the faces due this frame, at once:
            each face every 2nd frame, half of them each frame)
        --> per-track smoothing (probabilities, pose) --> intensity and phase --> [FaceResult]

A track the window search loses is looked for once more in copies of its window rotated by
+-15 and +-30 degrees (emotion.face.rotate): a head tilting sideways past what the upright
cascade finds keeps its track, with its parts mapped back and the roll measured.

Tracking first: finding a face where it was a frame ago is far cheaper than finding it
anywhere. A full-frame scan must look at every position and every size down to the smallest
face wanted (5% of the short side: the people 4 m from a webcam, the group of
group_pan.mp4), which costs 110-210 ms at 720p on a 2-vCPU VM; a track's window (twice its
box, scaled so the face is ~48 px, searched at face sizes 0.75-1.35x its own) costs 2-3 ms.
The full scan runs every `detect_every` frames to find new faces, so a face that walks in
is found within that many frames plus SCAN_LAG. While faces are tracked, it
runs on a worker thread beside the next SCAN_LAG frames and its new faces join the tracks
after them (emotion.video.lagged): the frames go on while it runs, and the result does not
depend on its timing.

The classifier is passed in (dependency injection): anything with a
`predict_faces(list of gray uint8 crops) -> (N, 7) probabilities` method works, which is
how the tests run the whole pipeline without trained weights.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from functools import partial

import numpy as np

from emotion.face import expression
from emotion.face.detector import (PHOTO_CONFIG, VIDEO_CONFIG, Box, FaceDetector, FaceParts,
                                   PartsDetector, align_face, crop_face, drop_duplicates, new_faces,
                                   overlap_fraction)
from emotion.face.pose import HeadPose, ProfileDetector, estimate_pose
from emotion.face.landmarks import follow_box, frame_box, locate
from emotion.face.result import FaceResult
from emotion.face.rotate import find_rotated
from emotion.io import draw
from emotion.io.images import to_gray8
from emotion.io.messages import plural
from emotion.labels import NUM_CLASSES
from emotion.video.lagged import Ahead
from emotion.video.track import IoUTracker

# See the class docstring of FacePipeline for how these were chosen.
DETECT_EVERY = 10  # a full-frame scan every 10 frames (1/3 s at 30 fps)
NEAR_EVERY = 2     # between scans, the tracks' windows searched every 2nd frame
RESCAN_AFTER = 2   # a track missed by this many window searches in a row: scan at once
EYES_EVERY = 5     # each track's eyes looked for again every 5 frames
CLASSIFY_EVERY = 2  # each face through the CNN every 2nd frame, half of the faces each frame
SCAN_LAG = 9       # a scan runs on a worker beside 9 frames, its new faces merged after them
# The weights `live`, `video` and `serve` use by default: the landmark model itself, so that one
# pass a face gives the emotion, the points, the pose and the presence the video pipeline
# follows faces by (emotion.video.follow; README: its accuracy).
VIDEO_WEIGHTS = "mobile_face"
LANDMARK_WEIGHTS = "mobile_face"  # the landmark and pose model of every front end


def one_blas_thread():
    """A context in which OpenBLAS uses one thread: how the video/live/predict commands run.

    A frame holds a handful of faces, so more BLAS threads gain little, while idle OpenBLAS
    workers spin-wait after every call and, on a 2-core machine, take the core that OpenCV's
    face detector needs (measured on woman_talking.mp4: detection 11.8 -> 18.6 ms per frame
    with the default two BLAS threads).
    """
    from nnlite.blas import blas_on_threads  # (imports no Numba)

    return blas_on_threads(1)


def load_classifier(weights: str | None = None, backend: str | None = None):
    """The trained EmotionClassifier (None = the shipped weights). Tests replace this."""
    from emotion.cnn.classifier import EmotionClassifier  # imported late: it pulls in nnlite

    return EmotionClassifier.load(weights, backend=backend)


def load_landmarker(classifier=None, backend: str | None = None):
    """The landmark and pose model (LANDMARK_WEIGHTS): the classifier itself when its
    model has the geometry head (one pass gives the emotion and the points), else the
    shipped FaceNet beside it (loaded here, not through load_classifier, which tests
    replace with a fake classifier: they still get real landmarks)."""
    from emotion.cnn.classifier import EmotionClassifier

    if getattr(classifier, "has_geometry", False):
        return classifier
    return EmotionClassifier.load(LANDMARK_WEIGHTS, backend=backend)


class StageTimer:
    """Wall time per pipeline stage, summed over frames, for the benchmark's split."""

    STAGES = ("decode", "detect", "parts", "classify", "draw")

    def __init__(self):
        self.seconds = defaultdict(float)
        self.frames = 0

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def ms_per_frame(self) -> dict[str, float]:
        n = max(1, self.frames)
        return {name: 1000.0 * self.seconds[name] / n for name in self.STAGES
                if name in self.seconds}

    def summary(self) -> str:
        split = self.ms_per_frame()
        total = sum(split.values())
        parts = ", ".join(f"{name} {ms:.1f}" for name, ms in split.items())
        fps = 1000.0 / total if total > 0 else float("inf")
        return (f"{plural(self.frames, 'frame')}, {total:.1f} ms/frame ({parts}) = "
                f"{fps:.1f} frames/s")


class FacePipeline:
    """Per-frame processing of a video or camera stream; see the module docstring.

    detect_every=k: a full-frame scan every k-th frame, and on the frame after a track was
    lost (missed by RESCAN_AFTER window searches in a row; a track missed once is looked
    for again on the next frame); in between each track is looked for in a window around
    its box (local=True), or keeps its last box (local=False, the tracker's carry).
    near_every=n: the windows are searched every n-th frame between scans, and the tracks
    carried on the others. scan_lag=l: while faces are tracked, a periodic scan runs on a
    worker beside the next l frames (0: in place; at most detect_every - 1).
    eyes_every=e: a track's eyes (used to level the crop) are looked for again when it is
    seen e or more frames after the last look. classify_every=c: each frame, the CNN
    sees the faces that have waited longest, about 1/c of them (every new face and every face
    waiting c frames or more among them), so each face is classified every c-th frame and the
    work is spread evenly over the frames; a face keeps its smoothed probabilities between.
    parts_ahead=True: after a track's first frame, its parts refreshes run on a worker
    thread (emotion.video.lagged), about 1/e of the faces at a time, applied at the next frame;
    False finds them in place.

    How the defaults were chosen, on every shared clip (benchmarks/RESULTS.md has the
    figures; the machine and date of each in brackets: Xeon = the 2-vCPU Intel Xeon KVM guest,
    EPYC = the 2-vCPU AMD EPYC Zen 3 one):
    - the scan preset (VIDEO_CONFIG) with the window search keeps all six 60-140 px faces of
      group_pan.mp4 in all 240 frames under 6 IDs, and the face of each other clip;
    - k = 10: a new face within a third of a second at 30 fps, a scan's cost spread over ten
      frames;
    - e = 5: eyes found on every frame gave the same emotion in 96.4-100% of the face-frames
      for 2-16 ms more per frame (Xeon, 2026-12-03);
    - n = 2: the same faces and IDs as n = 1 for 19-29% less detection time (Xeon, 2026-12-04);
    - scan_lag = 9: the same faces, 3-14% more frames/s end to end (EPYC, 2026-12-06);
      a face that walks in is reported up to 9 frames (0.3 s) later;
    - classify_every = 2: the same emotion as on every frame in 92.2-97.6% of the
      face-frames (the others are near-ties), probabilities within 0.094, half the CNN's
      time (EPYC, 2026-12-06); --classify-every 1 classifies every face on every frame;
    - parts_ahead: the same faces, 99.4-100% the same emotion, `emotion live` on group_pan
      24.1-27.6 -> 26.5-29.7 frames/s in three interleaved rounds (EPYC, 2026-12-06).
    """

    def __init__(self, classifier, detector: FaceDetector | None = None,
                 tracker: IoUTracker | None = None, parts: PartsDetector | None = None,
                 detect_every: int = DETECT_EVERY, margin: float = 0.15, align: bool = True,
                 local: bool = True, eyes_every: int = EYES_EVERY,
                 near_every: int = NEAR_EVERY, scan_lag: int = SCAN_LAG,
                 classify_every: int = CLASSIFY_EVERY, parts_ahead: bool = True,
                 landmarker=None):
        if min(detect_every, eyes_every, near_every, classify_every) < 1 or scan_lag < 0:
            raise ValueError("detect_every, eyes_every, near_every and classify_every must be "
                             ">= 1, scan_lag >= 0")
        self.classifier = classifier
        # With a landmark model (load_landmarker) the landmarks give the parts, the pose and
        # the levelled crop, in the CNN pass of each face; the parts cascades and their
        # worker are not used (the eye cascade still confirms faces in rotated windows).
        self.landmarker = landmarker
        if landmarker is not None:
            parts_ahead = False
        self.detector = detector or FaceDetector(VIDEO_CONFIG)
        self.tracker = tracker or IoUTracker()
        # The parts level the crop and give the pose; without aligning none are looked for.
        self.parts = parts if parts is not None else (parts_detector() if align else None)
        self.detect_every, self.eyes_every, self.near_every = detect_every, eyes_every, near_every
        self.classify_every = classify_every
        # The scan on a worker thread (emotion.video.lagged), with a detector of its own; in
        # place when scans come every frame, when the detector cannot be cloned (a test's),
        # or without the window search (local=False: the scan's boxes are all there is, and
        # lag frames old they would trail a moving face).
        scan_lag = min(scan_lag, detect_every - 1)
        clone = getattr(self.detector, "clone", None)
        self.ahead = (Ahead(clone().detect, scan_lag, "face-scan") if scan_lag and clone
                      and local else None)
        # The parts refreshes on a worker of their own, with their own cascades; in place
        # when the parts detector cannot be cloned (a test's) or when asked (parts_ahead).
        clone = getattr(self.parts, "clone", None)
        self.parts_worker = clone() if clone and parts_ahead else None
        self.parts_job = Ahead(partial(parts_and_pose, self.parts_worker), 1, "face-parts") \
            if self.parts_worker is not None else None
        self._parts_for = []  # (track, timestamp) of the job in flight
        self.margin, self.align, self.local = margin, align, local
        self.phases: dict[int, expression.PhaseTracker] = {}
        self.frame_index = 0
        self.rescan = False  # a track was lost: scan the whole next frame
        self.rotated = []    # this frame's faces found in rotated windows (_detections)
        self.show_parts = False  # draw the parts and pose axes (--show-parts)
        self.timings = StageTimer()

    def _detections(self, gray: np.ndarray) -> list[Box] | None:
        """This frame's boxes: a full scan, the tracks' windows (plus the new faces of a scan
        started scan_lag frames ago), or None (carry the boxes).

        A track seen last frame that its window search misses is looked for in rotated
        copies of the window (emotion.face.rotate); what is found there is kept in
        self.rotated, to give that track its parts and pose.
        """
        self.rotated = []
        tracks = self.tracker.tracks
        scan = self.frame_index % self.detect_every == 0
        # In place: a rescan (a track was lost: its face is wanted now, not lag frames
        # later), and a scan while nothing is tracked (no frames to go on with meanwhile).
        if self.rescan or (scan and (self.ahead is None or not tracks)):
            if self.ahead is not None and self.ahead.busy:
                self.ahead.take()  # superseded by this frame's scan; waited for, so an error
                                   # it ran into is raised, not lost
            return self.detector.detect(gray)
        if scan and not self.ahead.busy:
            self.ahead.start(self.frame_index, gray.copy())  # copied: the caller owns gray
        joining = self.ahead is not None and self.ahead.due(self.frame_index)
        if not tracks:
            return self.ahead.take() if joining else None
        retry = any(t.misses for t in tracks)  # missed once: look again now
        if not joining and (not self.local or (self.frame_index % self.detect_every
                                               % self.near_every and not retry)):
            return None
        found = []
        for track in tracks:
            near = self.detector.detect_near(gray, track.box)
            if not near and self.parts is not None and track.misses == 0:
                self.rotated += find_rotated(gray, self.detector, self.parts, near=track.box)
                near = [hit.box for hit in self.rotated[-1:]]
            found += near
        max_overlap = self.detector.config.max_overlap
        if joining:
            found += new_faces(self.ahead.take(), found, max_overlap)
        # Two tracks' windows can overlap and both find the same face: keep it once.
        return drop_duplicates(found, max_overlap)

    def _refresh_parts(self, gray: np.ndarray, tracks, timestamp: float) -> None:
        """Parts and pose where a track was just seen, every eyes_every-th frame of its life
        (and at once for a new one); carried in between, like the box. The profile cascade
        runs only for a track whose eyes were not found.

        A new track's parts are found in place, so its first crop is levelled; the later
        refreshes of a frame run on a worker (emotion.video.lagged) beside the rest of the frame
        and are applied at the next frame, before its faces are cropped.
        """
        if self.parts_job is not None and self.parts_job.due(self.frame_index):
            alive = {id(t) for t in self.tracker.tracks}  # id(): == would compare fields
            for (track, found_at), (parts, pose) in zip(self._parts_for,
                                                        self.parts_job.take()):
                if id(track) in alive:
                    self._set_parts(track, parts, pose, found_at)
        due = []
        for track in tracks:
            if track.frames_since_seen != 0:
                continue
            hit = next((h for h in self.rotated if overlap_fraction(h.box, track.box) > 0.5),
                       None)
            if hit is not None:  # found in a rotated copy: its parts, mapped back
                self._set_parts(track, hit.parts, hit.pose, timestamp)
            elif track.parts_age is None or (self.parts_job is None and
                                             track.age - track.parts_age >= self.eyes_every):
                track.parts_age = track.age
                (parts, pose), = parts_and_pose(self.parts, gray, [track.box])
                self._set_parts(track, parts, pose, timestamp)
            elif track.age - track.parts_age >= self.eyes_every:
                due.append(track)
        if due and not self.parts_job.busy:
            # The longest-waiting first, about 1/eyes_every of the faces a frame: faces that
            # came together would otherwise all be refreshed on the same frames, in one job
            # longer than a frame, which the next frame would wait for.
            due.sort(key=lambda t: t.age - t.parts_age, reverse=True)
            on_worker = due[:-(-len(tracks) // self.eyes_every)]
            for track in on_worker:
                track.parts_age = track.age
            self._parts_for = [(t, timestamp) for t in on_worker]
            self.parts_job.start(self.frame_index, gray.copy(), [t.box for t in on_worker])

    def _set_parts(self, track, parts: FaceParts, pose: HeadPose, timestamp: float) -> None:
        track.parts, track.eyes = parts, parts.eyes
        self.tracker.smooth_pose(track, pose, timestamp)

    def _due_for_classification(self, tracks) -> list:
        """The tracks whose faces the CNN sees this frame: every new one, every one that has
        waited classify_every frames or more, and the longest-waiting others up to
        1/classify_every of all (rounded down: one face alone waits its k frames), so the
        work is about the same on every frame."""
        if self.classify_every == 1:
            return list(tracks)
        waited = sorted((t for t in tracks if t.classified_at is not None),
                        key=lambda t: t.classified_at)
        new = [t for t in tracks if t.classified_at is None]
        overdue = sum(self.frame_index - t.classified_at >= self.classify_every for t in waited)
        share = len(tracks) // self.classify_every
        return (new + waited)[:max(share, len(new) + overdue)]

    def _classify(self, gray: np.ndarray, tracks, timestamp: float) -> None:
        """The CNN on these tracks' faces, in one batch (one batch of N is far faster than N
        batches of 1); each track's smoothed probabilities and phase take the new values."""
        if self.landmarker is not None:
            return self._classify_with_landmarks(gray, tracks, timestamp)
        crops = [align_face(gray, t.box, t.eyes, self.margin) if self.align
                 else crop_face(gray, t.box, self.margin) for t in tracks]
        tracks = [t for t, c in zip(tracks, crops) if c.size > 0]
        crops = [c for c in crops if c.size > 0]
        if not crops:
            return
        probabilities = np.asarray(self.classifier.predict_faces(crops), dtype=np.float32)
        for track, probs in zip(tracks, probabilities):
            smoothed = self.tracker.smooth_probabilities(track, probs, timestamp)
            track.classified_at = self.frame_index
            phase = self.phases.setdefault(track.track_id, expression.PhaseTracker())
            phase.update(smoothed, timestamp)

    def _classify_with_landmarks(self, gray: np.ndarray, tracks, timestamp: float) -> None:
        """The landmark model on these tracks' faces, in one batch: each crop levelled by
        the track's last roll (a new track's, or one found in a rotated window, by a first
        pass); the points, parts and pose, and the emotion of that crop (from the same pass
        when the classifier is the landmark model)."""
        if not tracks:
            return
        hints, relevel = [], []
        for t in tracks:
            hit = next((h for h in self.rotated if overlap_fraction(h.box, t.box) > 0.5), None)
            roll = hit.pose.roll if hit is not None else t.pose.roll
            hints.append(roll)
            relevel.append(t.landmarks is None or hit is not None)
        faces, crops, probabilities = locate(self.landmarker.predict_geometry, gray,
                                             [t.box for t in tracks], rolls=hints,
                                             relevel=relevel)
        if self.landmarker is not self.classifier:
            probabilities = np.asarray(self.classifier.predict_faces([c.image for c in crops]),
                                       dtype=np.float32)
        for track, face, probs in zip(tracks, faces, probabilities):
            track.landmarks, track.landmarks_box = face.points, track.box
            self._set_parts(track, face.parts(track.box[3]), face.pose(), timestamp)
            smoothed = self.tracker.smooth_probabilities(track, probs, timestamp)
            track.classified_at = self.frame_index
            phase = self.phases.setdefault(track.track_id, expression.PhaseTracker())
            phase.update(smoothed, timestamp)

    @staticmethod
    def _landmarks_now(track):
        """A track's landmarks where its box is this frame (found at its last CNN pass)."""
        if track.landmarks is None:
            return None
        return follow_box(track.landmarks, track.landmarks_box, track.box)

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> list[FaceResult]:
        """Faces of one frame (BGR, BGRA or gray, any depth) at `timestamp` seconds."""
        if timestamp is None:
            timestamp = self.frame_index / 30.0  # a nominal clock keeps the phase slopes sane
        gray = to_gray8(frame)
        self.timings.frames += 1

        with self.timings.stage("detect"):
            boxes = self._detections(gray)
            tracks = self.tracker.step(boxes)
            # A track its window missed twice in a row (once is often a blink or a blurred
            # frame, which the retry on the next frame settles): scan the next frame whole.
            self.rescan = boxes is not None and any(t.misses == RESCAN_AFTER
                                                    for t in self.tracker.tracks)
        self.frame_index += 1

        if self.parts is not None and self.landmarker is None:
            with self.timings.stage("parts"):
                self._refresh_parts(gray, tracks, timestamp)

        with self.timings.stage("classify"):
            self._classify(gray, self._due_for_classification(tracks), timestamp)
            results = [FaceResult.build(t.track_id, t.box, t.probabilities, t.eyes,
                                        self.phases[t.track_id].phase, parts=t.parts,
                                        pose=t.pose, landmarks=self._landmarks_now(t))
                       for t in tracks if t.probabilities is not None]

        live_ids = {t.track_id for t in self.tracker.tracks}
        for track_id in list(self.phases):
            if track_id not in live_ids:
                del self.phases[track_id]
        return results

    def draw(self, frame: np.ndarray, results: list[FaceResult],
             fps: float | None = None) -> np.ndarray:
        """Annotate an 8-bit BGR frame in place and return it."""
        with self.timings.stage("draw"):
            return draw.draw_results(frame, results, fps, show_parts=self.show_parts)


def parts_and_pose(parts: PartsDetector, gray: np.ndarray, boxes) -> list:
    """[(FaceParts, HeadPose)] for each face box: the parts, then the pose from them (the
    profile cascade, this thread's own, only where the eyes are missing)."""
    found = []
    for box in boxes:
        p = parts.find(gray, box)
        found.append((p, estimate_pose(gray, box, p.eyes, p.mouth, profile_detector())))
    return found


_per_thread = threading.local()


def profile_detector() -> ProfileDetector:
    """The profile cascade, loaded once per thread: an OpenCV CascadeClassifier must not be
    used by two threads at once (serve runs a video job beside the photo and live requests;
    sharing one failed with OpenCV's getScaleData assertion)."""
    if not hasattr(_per_thread, "profile"):
        _per_thread.profile = ProfileDetector()
    return _per_thread.profile


def parts_detector() -> PartsDetector:
    """The parts detector of every front end: the eye and smile cascades (the eyes and the
    mouth; the profile cascade is profile_detector's, one per thread). One definition, so
    that no front end loses a part: batch built its own without the smile cascade, and
    never found a mouth, so its pose differed from predict's (issue 29)."""
    return PartsDetector()


def photo_detectors() -> tuple[FaceDetector, PartsDetector]:
    """The face and parts detectors for still images, as `emotion predict` uses them: one
    definition, so that every front end (predict, batch, serve, explain) finds the same
    faces and parts. Video finds its parts with the same parts_detector, its faces with
    VIDEO_CONFIG (emotion/face/detector.py says how the two presets differ)."""
    return FaceDetector(PHOTO_CONFIG), parts_detector()


def analyze_image(classifier, image: np.ndarray, detector: FaceDetector,
                  parts: PartsDetector | None = None, margin: float = 0.15,
                  rotations: bool = False, landmarker=None) -> list[FaceResult]:
    """All faces of a still image, numbered 1..N left to right, without any smoothing.

    A photo has no time axis, so there is no tracking and the phase is empty. With a
    landmarker (load_landmarker), each face gets its 68 landmarks, the parts drawn from
    them and the model's head pose, and the emotion is read from the crop levelled by the
    landmark eyes (emotion.face.landmarks); without one, with parts, the Haar parts and
    the geometric pose (the profile cascade where the eyes are missing). `rotations=True`
    also searches copies rotated by +-15 and +-30 degrees (emotion.face.rotate) for faces
    the upright search missed.
    """
    gray = to_gray8(image)
    boxes = detector.detect(gray)
    analysed = (parts_and_pose(parts, gray, boxes) if parts and landmarker is None
                else [(FaceParts(), HeadPose())] * len(boxes))
    found = [(box, p, pose) for box, (p, pose) in zip(boxes, analysed)]
    if rotations and parts is not None:
        for hit in find_rotated(gray, detector, parts):
            if all(overlap_fraction(hit.box, b) <= 0.4 and overlap_fraction(b, hit.box) <= 0.4
                   for b in boxes):
                found.append((hit.box, hit.parts, hit.pose))
        found.sort(key=lambda f: (f[0][0], f[0][1]))
    if landmarker is not None:
        return _with_landmarks(classifier, landmarker, gray, found)
    crops = [align_face(gray, box, p.eyes, margin) for box, p, _ in found]
    probabilities = (np.asarray(classifier.predict_faces(crops), dtype=np.float32)
                     if crops else np.zeros((0, NUM_CLASSES), np.float32))
    return [FaceResult.build(i + 1, box, probs, p.eyes, parts=p, pose=pose)
            for i, ((box, p, pose), probs) in enumerate(zip(found, probabilities))]


def _with_landmarks(classifier, landmarker, gray, found) -> list[FaceResult]:
    """analyze_image's faces through the landmark model: the points, the parts drawn from
    them, the model's pose, and the emotion of the levelled crop (from the same pass when
    the classifier is the landmark model). A face found in a rotated copy starts levelled
    by the roll measured there."""
    boxes = [box for box, _, _ in found]
    hints = [pose.roll for _, _, pose in found]
    faces, crops, probabilities = locate(landmarker.predict_geometry, gray, boxes, rolls=hints)
    if landmarker is not classifier:
        probabilities = (np.asarray(classifier.predict_faces([c.image for c in crops]),
                                    dtype=np.float32) if crops
                         else np.zeros((0, NUM_CLASSES), np.float32))
    results = []
    for i, (face, probs) in enumerate(zip(faces, probabilities)):
        # The box where the points put the face (landmarks.frame_box: the detector's kind of
        # box), as the video pipeline reports a followed face's: the same face, the same box.
        box = tuple(int(round(v)) for v in frame_box(face.points)[0])
        parts = face.parts(box[3])
        results.append(FaceResult.build(i + 1, box, probs, parts.eyes, parts=parts,
                                        pose=face.pose(), landmarks=face.points))
    return results
