"""The real-time face pipeline: detect -> track -> align and crop -> classify -> smooth.

    frame (BGR) --gray--> FaceDetector (every k-th frame) --> IoUTracker (every frame)
        --> PartsDetector (eyes, on detection frames) --> align_face / crop
        --> classifier.predict_faces(all crops of the frame at once)
        --> per-track smoothing --> intensity and phase --> [FaceResult]

The classifier is passed in (dependency injection): anything with a
`predict_faces(list of gray uint8 crops) -> (N, 7) probabilities` method works, which is
how the tests run the whole pipeline without trained weights.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from emotion import dynamics, overlay
from emotion.detect import (VIDEO_CONFIG, Box, FaceDetector, PartsDetector, align_face,
                            crop_face, roll_angle)
from emotion.labels import EMOTIONS
from emotion.sources import plural, to_gray8
from emotion.track import IoUTracker


def one_blas_thread():
    """A context in which OpenBLAS uses one thread: how the video/live/predict commands run.

    A frame holds a handful of faces, so more BLAS threads gain little, while idle OpenBLAS
    workers spin-wait after every call and, on a 2-core machine, take the core that OpenCV's
    face detector needs (measured on woman_talking.mp4: detection 11.8 -> 18.6 ms per frame
    with the default two BLAS threads).
    """
    from nnlite.backends.numba_runtime import blas_on_threads  # (imports no Numba)

    return blas_on_threads(1)


def load_classifier(weights: str | None = None, backend: str | None = None):
    """The trained EmotionClassifier (None = the shipped weights). Tests replace this."""
    from emotion.predictor import EmotionClassifier  # imported late: it pulls in nnlite

    return EmotionClassifier.load(weights, backend=backend)


@dataclass
class FaceResult:
    """One face in one frame."""

    track_id: int
    box: Box                    # (x, y, w, h) in frame pixels
    probabilities: np.ndarray   # (7,) float32, smoothed over the track, in EMOTIONS order
    emotion: str                # the most probable class
    intensity: str              # low / medium / high (see emotion.dynamics)
    phase: str                  # neutral / onset / apex / offset (see emotion.dynamics)
    eyes: list[Box] = field(default_factory=list)
    roll: float | None = None   # head roll in degrees, when both eyes were found

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "box": [int(v) for v in self.box],
            "emotion": self.emotion,
            "probabilities": {name: round(float(p), 4)
                              for name, p in zip(EMOTIONS, self.probabilities)},
            "intensity": self.intensity,
            "phase": self.phase,
            "roll": None if self.roll is None else round(self.roll, 1),
        }


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

    `detect_every=k` runs the face detector on every k-th frame only; in between, tracks
    keep their last box (see `emotion.track` for the trade-off), but the faces are still
    classified on every frame, so expressions are followed at full frame rate.
    """

    def __init__(self, classifier, detector: FaceDetector | None = None,
                 tracker: IoUTracker | None = None, parts: PartsDetector | None = None,
                 detect_every: int = 2, margin: float = 0.15, align: bool = True):
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        self.classifier = classifier
        self.detector = detector or FaceDetector(VIDEO_CONFIG)
        self.tracker = tracker or IoUTracker()
        # Eyes are only needed to align the crop; skip their cascade when not aligning.
        self.parts = parts if parts is not None else (
            PartsDetector(smile_cascade=None) if align else None)
        self.detect_every = detect_every
        self.margin = margin
        self.align = align
        self.phases: dict[int, dynamics.PhaseTracker] = {}
        self.frame_index = 0
        self.timings = StageTimer()

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> list[FaceResult]:
        """Faces of one frame (BGR, BGRA or gray, any depth) at `timestamp` seconds."""
        if timestamp is None:
            timestamp = self.frame_index / 30.0  # a nominal clock keeps the phase slopes sane
        gray = to_gray8(frame)
        detect_now = self.frame_index % self.detect_every == 0
        self.frame_index += 1
        self.timings.frames += 1

        with self.timings.stage("detect"):
            boxes = self.detector.detect(gray) if detect_now else None
            tracks = self.tracker.step(boxes)

        # Eyes are looked for on detection frames only and carried in between, like the box.
        if detect_now and self.parts is not None:
            with self.timings.stage("parts"):
                for track in tracks:
                    if track.frames_since_seen == 0:
                        track.eyes = self.parts.find_eyes(gray, track.box)

        with self.timings.stage("classify"):
            crops = [align_face(gray, t.box, t.eyes, self.margin) if self.align
                     else crop_face(gray, t.box, self.margin) for t in tracks]
            keep = [i for i, c in enumerate(crops) if c.size > 0]
            tracks = [tracks[i] for i in keep]
            # One call for all faces: the CNN is far faster on one batch of N than N batches of 1.
            probabilities = (np.asarray(self.classifier.predict_faces([crops[i] for i in keep]),
                                        dtype=np.float32) if keep else np.zeros((0, 7), np.float32))
            results = []
            for track, probs in zip(tracks, probabilities):
                smoothed = self.tracker.smooth_probabilities(track, probs, timestamp)
                results.append(self._result(track, smoothed, timestamp))

        live_ids = {t.track_id for t in self.tracker.tracks}
        for track_id in list(self.phases):
            if track_id not in live_ids:
                del self.phases[track_id]
        return results

    def _result(self, track, probabilities: np.ndarray, timestamp: float) -> FaceResult:
        emotion, p = dynamics.dominant(probabilities)
        phase = self.phases.setdefault(track.track_id, dynamics.PhaseTracker())
        return FaceResult(
            track_id=track.track_id, box=tuple(track.box), probabilities=probabilities,
            emotion=emotion, intensity=dynamics.intensity(p),
            phase=phase.update(probabilities, timestamp),
            eyes=list(track.eyes), roll=roll_angle(track.eyes))

    def draw(self, frame: np.ndarray, results: list[FaceResult],
             fps: float | None = None) -> np.ndarray:
        """Annotate an 8-bit BGR frame in place and return it."""
        with self.timings.stage("draw"):
            return overlay.draw_results(frame, results, fps)


def analyze_image(classifier, image: np.ndarray, detector: FaceDetector,
                  parts: PartsDetector | None = None, margin: float = 0.15) -> list[FaceResult]:
    """All faces of a still image, numbered 1..N left to right, without any smoothing.

    A photo has no time axis, so there is no tracking and the phase is empty.
    """
    gray = to_gray8(image)
    boxes = detector.detect(gray)
    eyes = [parts.find_eyes(gray, box) if parts else [] for box in boxes]
    crops = [align_face(gray, box, e, margin) for box, e in zip(boxes, eyes)]
    probabilities = (np.asarray(classifier.predict_faces(crops), dtype=np.float32)
                     if crops else np.zeros((0, 7), np.float32))
    results = []
    for i, (box, e, probs) in enumerate(zip(boxes, eyes, probabilities)):
        emotion, p = dynamics.dominant(probs)
        results.append(FaceResult(track_id=i + 1, box=box, probabilities=probs, emotion=emotion,
                                  intensity=dynamics.intensity(p), phase="", eyes=e,
                                  roll=roll_angle(e)))
    return results
