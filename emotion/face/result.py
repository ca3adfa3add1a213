"""One face in one frame, as every front end reports it: FaceResult.

The video pipeline (emotion.video.follow) and the still-image path (pipeline.analyze_image)
build them; predict's JSON, the video rows (emotion.io.rows), serve and batch read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emotion.face import expression
from emotion.face.detector import Box, FaceParts, roll_angle
from emotion.labels import EMOTIONS
from emotion.face.pose import HeadPose


@dataclass
class FaceResult:
    """One face in one frame."""

    track_id: int
    box: Box                    # (x, y, w, h) in frame pixels
    probabilities: np.ndarray   # (7,) float32, smoothed over the track, in EMOTIONS order
    emotion: str                # the most probable class
    intensity: str              # low / medium / high (see emotion.face.expression)
    phase: str                  # neutral / onset / apex / offset (see emotion.face.expression)
    eyes: list[Box] = field(default_factory=list)
    roll: float | None = None   # head roll in degrees, when both eyes were found
    pose: HeadPose = field(default_factory=HeadPose)  # conventions: emotion.face.pose
    parts: FaceParts = field(default_factory=FaceParts)  # eyes, eyebrows, mouth (frame px)
    landmarks: np.ndarray | None = None  # (68, 2) frame px, iBUG order (emotion.face.ibug68)

    @classmethod
    def build(cls, track_id: int, box: Box, probabilities: np.ndarray, eyes: list[Box],
              phase: str = "", parts: FaceParts | None = None,
              pose: HeadPose | None = None,
              landmarks: np.ndarray | None = None) -> "FaceResult":
        """The one way a result is made: the dominant emotion and its intensity from the
        probabilities; the parts (default: the eyes alone) and the pose (default: the roll
        from the eyes) as given."""
        emotion, p = expression.dominant(probabilities)
        parts = parts if parts is not None else FaceParts(eyes=list(eyes), roll=roll_angle(eyes))
        pose = pose if pose is not None else HeadPose(roll=roll_angle(eyes))
        return cls(track_id=track_id, box=tuple(box), probabilities=probabilities,
                   emotion=emotion, intensity=expression.intensity(p), phase=phase,
                   eyes=list(eyes), roll=pose.roll, pose=pose, parts=parts,
                   landmarks=landmarks)

    def pose_dict(self) -> dict:
        """{"yaw", "pitch", "roll"} in degrees (one decimal), None where unknown."""
        return self.pose.to_dict()

    def parts_dict(self) -> dict:
        """The parts in frame pixels: {"eyes": [[x, y, w, h], ...] (0 or 2, image-left
        first), "eyebrows": [box or None per eye], "mouth": box or None, "eyebrow_raise":
        the mean eyebrow-to-eye distance over the face height, or None}."""
        def box(b):
            return None if b is None else [int(v) for v in b]

        raise_ = self.parts.eyebrow_raise
        return {"eyes": [box(e) for e in self.parts.eyes],
                "eyebrows": [box(b) for b in self.parts.eyebrows],
                "mouth": box(self.parts.mouth),
                "eyebrow_raise": None if raise_ is None else round(float(raise_), 4)}

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
            "pose": self.pose_dict(),
            "parts": self.parts_dict(),
            "landmarks": self.landmarks_list(),
        }

    def landmarks_list(self) -> list | None:
        """The 68 points as [[x, y], ...] frame pixels to 0.1 px (continuous coordinates:
        pixel i covers [i, i + 1)), iBUG 300-W order; None without a landmark model."""
        if self.landmarks is None:
            return None
        return [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
