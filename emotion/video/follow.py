"""The real-time face pipeline: find a face once, then follow it by its own landmarks.

    frame (BGR) --gray--> every DETECT_EVERY-th frame, the Haar scan looks for new faces
                          (on a worker beside the next SCAN_LAG frames while faces are
                          followed; in place while none is)
        --> one batch through the landmark model (emotion.cnn.models.FaceNet), every face
            of the frame at once: each crop placed where the face's points of the last frame
            say it is, levelled by its last roll; the new faces' crops on the scan's boxes
        --> per face: its presence (is the crop a framed face?), 68 points, pose and
            emotion --> the box of the next frame's crop from the points
        --> per-track smoothing (probabilities, pose) --> intensity and phase --> [FaceResult]

This is how MediaPipe's face mesh tracks (Kartynnik et al., "Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs", 2019): the detector runs to find faces, the
landmark model follows them, and a face's own landmarks place its next crop. What it
replaces, a Haar window search around each track every other frame (2-3 ms a face) plus a
rotated search when a head tilts, was slower and lost faces the cascade misses (a profile, a
hand over the mouth, a tilted head); the landmark model, given a crop near the face, finds
it in those frames too, and levels the next crop by the face's roll.

What keeps a track honest is the presence head: a crop that slid off the face is not a
framed face, and the model says so (emotion.training.presence made its negatives). A
followed face below MIN_PRESENCE for DROP_AFTER frames in a row is dropped, and the next
frame is scanned whole, so a face that moved too fast to follow is found again at once. A
new box must look like a framed face beyond doubt (NEW_MIN_PRESENCE) at its first look: the
cascade's false boxes (a hand, a pattern in the background) score lower, and are never
followed.

The emotion comes from the same pass when the classifier is the landmark model; another
classifier (`--weights default`) reads the same levelled crops every CLASSIFY_EVERY-th frame
per face, half of the faces each frame.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from emotion.face import expression
from emotion.face.detector import VIDEO_CONFIG, Box, FaceDetector, FaceParts, new_faces
from emotion.face.landmarks import frame_box, locate
from emotion.face.pose import HeadPose
from emotion.face.result import FaceResult
from emotion.io import draw
from emotion.io.images import to_gray8
from emotion.io.messages import plural
from emotion.video.lagged import Ahead
from emotion.video.track import iou, smooth_pose, smooth_probabilities

DETECT_EVERY = 10     # a scan for new faces every 10 frames (1/3 s at 30 fps)
SCAN_LAG = 9          # the scan runs beside 9 frames, its new faces joining after them
CLASSIFY_EVERY = 2    # another classifier than the landmark model: each face every 2nd frame
MIN_PRESENCE = 0.5    # below: the crop is not a framed face
DROP_AFTER = 3        # followed faces below MIN_PRESENCE this many frames in a row are dropped
# A new box must look like a framed face beyond doubt at its first look. On every shared clip
# and ground-truth clip (2026-12-08, the shipped weights), every true new face scored 0.999 or
# more there and every false box of the cascade 0.55-0.95; a face that scores less is tried
# again at the next scan.
NEW_MIN_PRESENCE = 0.99
DUPLICATE_IOU = 0.5   # two tracks on one face (boxes overlapping this much): the younger goes
# A worker scan's box is SCAN_LAG frames old when it is used: the face is looked for again
# in a window of the box grown by LAGGED_GROW a side (three box widths: a face crossing the
# frame in 3 s moves about one box width in 9 frames), where it is now.
LAGGED_GROW = 1.0
# A box whose side changes by more than this factor from one frame to the next is not a face
# followed (a real face's changes by a few percent a frame; the crossing and zooming faces of
# the ground-truth clips by under 3%): its points are not trusted, as for a low presence. A
# new face's points must fit the detector's box as closely.
MAX_SCALE_STEP = 1.3
# The pose's smoothing, in seconds. Each frame's pose from the model changes by about 1 degree
# a frame on a still head (0.9-1.1 yaw, 0.8-1.1 pitch, 0.4-0.6 roll on woman_talking and
# group_pan); 0.05 s halves that for 1.5 frames of lag at 30 fps, where the probabilities'
# 0.2 s would lag a head turning at 60 degrees a second by 12 degrees.
POSE_TIME_CONSTANT = 0.05

class StageTimer:
    """Wall time per pipeline stage, summed over frames, for the benchmark's split."""

    STAGES = ("decode", "detect", "classify", "draw")

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


@dataclass
class Followed:
    """One face followed over time (the fields the smoothing of emotion.video.track reads:
    probabilities, last_time, pose, pose_time)."""

    track_id: int                        # 0 until first reported, then 1, 2, 3, ...
    box: tuple                           # (x, y, w, h) floats: where its next crop goes
    roll: float = 0.0                    # degrees: its next crop is levelled by this
    velocity: tuple = (0.0, 0.0)         # the box centre's move over the last frame, px
    presence: float = 1.0                # the model's last presence probability
    low: int = 0                         # frames in a row with presence below MIN_PRESENCE
    age: int = 0                         # frames followed
    landmarks: np.ndarray | None = None  # (68, 2) frame px, from this frame's pass
    parts: FaceParts = field(default_factory=FaceParts)
    pose: HeadPose = field(default_factory=HeadPose)
    pose_time: float | None = None
    probabilities: np.ndarray | None = None
    last_time: float | None = None
    classified_at: int | None = None     # frame index of its last emotion reading
    phase: expression.PhaseTracker = field(default_factory=expression.PhaseTracker)

    def whole_box(self) -> Box:
        return tuple(int(round(v)) for v in self.box)

    def next_box(self) -> tuple:
        """Where the face should be next frame: its box moved by its last velocity."""
        x, y, w, h = self.box
        return (x + self.velocity[0], y + self.velocity[1], w, h)


class FollowPipeline:
    """Per-frame processing of a video or camera stream; see the module docstring.

    `process(frame, timestamp) -> [FaceResult]` and `draw(frame, results, fps)`, as
    emotion.video.loop and emotion.serve.camera call them. classifier: anything with
    `predict_faces(gray crops) -> (N, 7)`; landmarker: anything with `predict_geometry(gray
    crops) -> (probabilities, geometry, presence)` (EmotionClassifier of a FaceNet); when they
    are the same object, one pass gives everything.
    """

    def __init__(self, classifier, landmarker, detector: FaceDetector | None = None,
                 detect_every: int = DETECT_EVERY, scan_lag: int = SCAN_LAG,
                 classify_every: int = CLASSIFY_EVERY, time_constant: float = 0.2):
        if min(detect_every, classify_every) < 1 or scan_lag < 0:
            raise ValueError("detect_every and classify_every must be >= 1, scan_lag >= 0")
        self.classifier, self.landmarker = classifier, landmarker
        self.detector = detector or FaceDetector(VIDEO_CONFIG)
        self.detect_every, self.classify_every = detect_every, classify_every
        self.time_constant = time_constant  # seconds, for the probabilities' average
        scan_lag = min(scan_lag, detect_every - 1)
        clone = getattr(self.detector, "clone", None)
        # The periodic scan on a worker with a detector of its own (a CascadeClassifier must
        # not be shared by two threads); in place when it cannot be cloned (a test's).
        self.ahead = Ahead(clone().detect, scan_lag, "face-scan") if scan_lag and clone else None
        self.faces: list[Followed] = []
        self.next_id = 1
        self.frame_index = 0
        self.rescan = False      # a face was dropped: scan the next frame whole, in place
        self.show_parts = False  # draw the points and pose axes (--show-parts)
        self.timings = StageTimer()

    # -- finding new faces --------------------------------------------------------------

    def _new_boxes(self, gray: np.ndarray) -> list[Box]:
        """The boxes of faces not followed yet: a scan's on its frames, else none. A worker
        scan's boxes are SCAN_LAG frames old: each face is looked for again where it is now,
        in a wide window around its box (kept on its old box where the window misses it)."""
        scan = self.frame_index % self.detect_every == 0
        lagged = False
        if self.rescan or (scan and (self.ahead is None or not self.faces)):
            if self.ahead is not None and self.ahead.busy:
                self.ahead.take()  # superseded by this scan (waited for: its error is raised)
            found = self.detector.detect(gray)
        elif self.ahead is not None and self.ahead.due(self.frame_index):
            found, lagged = self.ahead.take(), True
        else:
            found = []
        if scan and self.ahead is not None and self.faces and not self.ahead.busy:
            self.ahead.start(self.frame_index, gray.copy())  # copied: the caller owns gray
        followed = [f.whole_box() for f in self.faces]
        found = new_faces(found, followed, self.detector.config.max_overlap)
        if lagged:
            found = [(self.detector.detect_near(gray, box, LAGGED_GROW) or [box])[0]
                     for box in found]
            found = new_faces(found, followed, self.detector.config.max_overlap)
        return found

    # -- following ----------------------------------------------------------------------

    def _follow(self, gray: np.ndarray, new: list[Box], timestamp: float) -> None:
        """One landmark pass over every followed face and every new box, then each face's
        box, roll, points, pose and emotion; faces that are not faces are dropped."""
        candidates = [Followed(track_id=0, box=tuple(float(v) for v in b)) for b in new]
        everyone = self.faces + candidates
        if not everyone:
            return
        geometry, crops, probabilities = locate(
            self.landmarker.predict_geometry, gray, [f.next_box() for f in everyone],
            rolls=[f.roll for f in everyone], relevel=[f.age == 0 for f in everyone])
        emotion_due = self._emotion_due(everyone)
        if self.classifier is not self.landmarker and emotion_due:
            read = self.classifier.predict_faces([crops[i].image for i in emotion_due])
            probabilities = {i: p for i, p in zip(emotion_due, read)}
        kept, dropped = [], False
        smallest = self._smallest_face(gray)
        for i, (face, found) in enumerate(zip(everyone, geometry)):
            face.presence = found.presence
            box, roll = frame_box(found.points)
            # For a new face, the step is from the detector's box to the points' box: on a real
            # face they agree (0.89-1.14 on the shared media, 10th-90th percentile), on a false
            # box the points, regressed on no face, rarely fit it.
            step = box[2] / max(face.box[2], 1e-6)
            least = MIN_PRESENCE if face.age else NEW_MIN_PRESENCE
            if (found.presence < least or box[2] < smallest
                    or not 1 / MAX_SCALE_STEP <= step <= MAX_SCALE_STEP):
                face.low += 1
                if face.age == 0 or face.low >= DROP_AFTER:
                    dropped |= face.age > 0
                    continue  # a new box that is no face, or a face lost
                face.age += 1
                kept.append(face)  # held where it was: its points are not to be trusted
                continue
            old = face.box if face.age else box
            face.velocity = ((box[0] + box[2] / 2) - (old[0] + old[2] / 2),
                             (box[1] + box[3] / 2) - (old[1] + old[3] / 2))
            face.box, face.roll, face.low = box, roll, 0
            face.landmarks, face.age = found.points, face.age + 1
            face.parts = found.parts(face.whole_box()[3])  # as analyze_image: whole pixels
            smooth_pose(face, found.pose(), timestamp, POSE_TIME_CONSTANT)
            if i in emotion_due or self.classifier is self.landmarker:
                smooth_probabilities(face, probabilities[i], timestamp, self.time_constant)
                face.classified_at = self.frame_index
                face.phase.update(face.probabilities, timestamp)
            kept.append(face)
        self.faces = _drop_duplicates(kept)
        self.rescan = dropped

    def _smallest_face(self, gray: np.ndarray) -> float:
        """The side of the smallest face the window search could confirm, in frame pixels: a
        followed box that shrinks below it has lost its face (points collapsing on a
        texture), as the detector's own limits say (DetectorConfig, NEAR_SIZES)."""
        from emotion.face.detector import NEAR_SIZES

        cfg = self.detector.config
        return NEAR_SIZES[0] * max(cfg.min_size_px, cfg.min_size_frac * min(gray.shape[:2]))

    def _emotion_due(self, faces) -> list[int]:
        """Indices of the faces another classifier reads this frame: every new one, every
        one that has waited classify_every frames or more, and the longest-waiting others up
        to 1/classify_every of all (rounded down: one face alone waits its k frames), so the
        work is about the same on every frame."""
        if self.classifier is self.landmarker or self.classify_every == 1:
            return list(range(len(faces)))
        new = [i for i, f in enumerate(faces) if f.classified_at is None]
        waited = sorted((i for i, f in enumerate(faces) if f.classified_at is not None),
                        key=lambda i: faces[i].classified_at)
        overdue = sum(self.frame_index - faces[i].classified_at >= self.classify_every
                      for i in waited)
        share = len(faces) // self.classify_every
        return (new + waited)[:max(share, len(new) + overdue)]

    # -- the frame ----------------------------------------------------------------------

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> list[FaceResult]:
        """Faces of one frame (BGR, BGRA or gray, any depth) at `timestamp` seconds."""
        if timestamp is None:
            timestamp = self.frame_index / 30.0  # a nominal clock keeps the phase slopes sane
        gray = to_gray8(frame)
        self.timings.frames += 1
        with self.timings.stage("detect"):
            new = self._new_boxes(gray)
        with self.timings.stage("classify"):
            self._follow(gray, new, timestamp)
            results = []
            for face in self.faces:
                if face.probabilities is None or face.landmarks is None:
                    continue
                if face.track_id == 0:  # IDs are handed out when first reported: 1, 2, 3
                    face.track_id, self.next_id = self.next_id, self.next_id + 1
                results.append(FaceResult.build(
                    face.track_id, face.whole_box(), face.probabilities, face.parts.eyes,
                    face.phase.phase, parts=face.parts, pose=face.pose,
                    landmarks=face.landmarks))
        self.frame_index += 1
        return results

    def draw(self, frame: np.ndarray, results: list[FaceResult],
             fps: float | None = None) -> np.ndarray:
        """Annotate an 8-bit BGR frame in place and return it."""
        with self.timings.stage("draw"):
            return draw.draw_results(frame, results, fps, show_parts=self.show_parts)


def _drop_duplicates(faces: list[Followed]) -> list[Followed]:
    """Two tracks that converged on one face: keep the older (its ID came first)."""
    kept: list[Followed] = []
    for face in sorted(faces, key=lambda f: -f.age):
        if all(iou(face.box, k.box) < DUPLICATE_IOU for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: (f.track_id == 0, f.track_id))
