"""Tracked against untracked: the faces of a clip followed by their landmarks (the video
pipeline, emotion.video.follow) against every frame analysed alone as a photo (Haar scan,
landmarks on a levelled crop: emotion.video.pipeline.analyze_image), frame by frame.

    python -m benchmarks.follow_agreement [--clips PATH ...] [--frames N] [--json F]

A followed face is paired with the photo path's face of highest IoU in the same frame
(IoU >= 0.3). Per pair: the points' distance divided by the photo face's inter-ocular
distance (NME), the pose difference per angle, and whether the top emotion is the same.
The follow pipeline smooths the probabilities and the pose over time (time constant 0.2 s)
and the photo path does not, so part of the difference is that smoothing: it is what a
user of `video` sees against `predict` on each frame. Also counted: frames where one path
has a face the other has not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from emotion.face import ibug68
from emotion.video import pipeline
from emotion.video.follow import FollowPipeline
from emotion.video.track import iou

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"


def agreement(clip, classifier, landmarker, frames: int | None = None) -> dict:
    """The figures of the module docstring for the first `frames` frames of `clip`."""
    detector, _ = pipeline.photo_detectors()
    follow = FollowPipeline(classifier, landmarker)
    capture = cv2.VideoCapture(str(clip))
    nme, pose, same, followed_only, photo_only, index = [], [], [], 0, 0, 0
    try:
        while frames is None or index < frames:
            ok, frame = capture.read()
            if not ok:
                break
            tracked = follow.process(frame, index / 30)
            alone = pipeline.analyze_image(classifier, frame, detector, landmarker=landmarker)
            index += 1
            used = set()
            for face in tracked:
                scored = [(iou(face.box, other.box), j) for j, other in enumerate(alone)
                          if j not in used]
                best = max(scored, default=(0.0, None))
                if best[0] < 0.3:
                    followed_only += 1
                    continue
                used.add(best[1])
                other = alone[best[1]]
                eyes = float(ibug68.interocular(other.landmarks))
                nme.append(float(np.linalg.norm(face.landmarks - other.landmarks, axis=1).mean())
                           / max(eyes, 1e-6))
                pose.append([abs(getattr(face.pose, a) - getattr(other.pose, a))
                             for a in ("yaw", "pitch", "roll")])
                same.append(face.emotion == other.emotion)
            photo_only += len(alone) - len(used)
    finally:
        capture.release()
    pose = np.array(pose, np.float64).reshape(-1, 3)
    return {"clip": Path(clip).name, "frames": index, "pairs": len(nme),
            "nme_median": float(np.median(nme)) if nme else None,
            "nme_mean": float(np.mean(nme)) if nme else None,
            "pose_mae": [round(float(v), 2) for v in pose.mean(axis=0)] if len(pose) else None,
            "same_emotion": float(np.mean(same)) if same else None,
            "followed_only": followed_only, "photo_only": photo_only}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", type=Path, default=sorted(MEDIA.glob("*.mp4")))
    parser.add_argument("--frames", type=int, default=None, help="at most N frames a clip")
    parser.add_argument("--weights", default=pipeline.VIDEO_WEIGHTS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with pipeline.one_blas_thread():
        classifier = pipeline.load_classifier(args.weights)
        landmarker = pipeline.load_landmarker(classifier)
        rows = [agreement(clip, classifier, landmarker, args.frames) for clip in args.clips]
    for row in rows:
        print(json.dumps(row))
    if args.json:
        from benchmarks import write_json

        write_json(args.json, {"command": "python -m benchmarks.follow_agreement", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
