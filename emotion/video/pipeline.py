"""The models every front end loads, and the still-image path: one photo's faces, at once.

    load_classifier, load_landmarker     the emotion model, and the landmark and pose model
    photo_detectors                      the face and parts detectors of `emotion predict`
    analyze_image(image) -> [FaceResult] every face of a photo, without any smoothing

predict, batch (its images), serve (its photos) and explain run analyze_image; a video or a
camera runs emotion.video.follow's FollowPipeline, which finds a face once and follows it
by its own landmarks.
"""

from __future__ import annotations

import threading

import numpy as np

from emotion.face.detector import (PHOTO_CONFIG, FaceDetector, FaceParts, PartsDetector,
                                   align_face, overlap_fraction)
from emotion.face.pose import HeadPose, ProfileDetector, estimate_pose
from emotion.face.landmarks import frame_box, locate
from emotion.face.result import FaceResult
from emotion.face.rotate import find_rotated
from emotion.io.images import to_gray8
from emotion.labels import NUM_CLASSES

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
    faces and parts. Video scans for its faces with VIDEO_CONFIG (emotion/face/detector.py
    says how the two presets differ) and takes their parts from the landmarks."""
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
