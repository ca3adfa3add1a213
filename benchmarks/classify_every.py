"""How often each face must go through a classifier other than the landmark model: the emotion
reported with each face classified every frame, against every 2nd, 3rd, ... frame
(FollowPipeline's classify_every), on every shared clip, and what each setting costs.

    python -m benchmarks.classify_every [--every 1 2 3] [--weights default] [--json F]

For each clip (every .mp4 in ../shared/data/media) and each setting it runs the video
pipeline as `emotion video --weights W` does (the landmark model follows the faces on every
frame; W reads the emotion from the same levelled crops) and keeps, for every face in every
frame, the reported emotion and smoothed probabilities. Following does not depend on the
setting, so the same (frame, track) pairs come out of every run; each is compared with the
every-frame run: the share of face-frames with the same emotion, the largest and the mean
absolute difference of a probability, and the classify stage's time per frame (the landmark
pass, the same in every setting, plus the classifier's; wall time on whatever the machine is
doing: compare settings within one run only). With the landmark model as the classifier
(`--weights mobile_face`) one pass gives everything and classify_every does not apply.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from benchmarks import write_json
from emotion.video import pipeline
from emotion.video.follow import FollowPipeline

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"


def run(classifier, landmarker, clip: Path, every: int) -> tuple[dict, float]:
    """{(frame, track): (emotion, probabilities)}, and the classify stage's ms per frame."""
    faces = FollowPipeline(classifier, landmarker, classify_every=every)
    capture = cv2.VideoCapture(str(clip))
    seen = {}
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            for r in faces.process(image, index / 30.0):
                seen[index, r.track_id] = (r.emotion, r.probabilities)
            index += 1
    finally:
        capture.release()
    return seen, faces.timings.ms_per_frame()["classify"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", help="default: every .mp4 in ../shared/data/media")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--weights", default="default",
                        help="the classifier (default: 'default'); not the landmark model")
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    clips = [Path(c) for c in args.clips] if args.clips else sorted(MEDIA.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips: {MEDIA} holds no .mp4 (pass --clips)")
    settings = sorted(set(args.every) | {1})  # every frame: the reference, its row its cost
    classifier = pipeline.load_classifier(args.weights, args.backend)
    landmarker = pipeline.load_landmarker(classifier, args.backend)
    if landmarker is classifier:
        raise SystemExit(f"--weights {args.weights} is the landmark model, which reads the "
                         "emotion in its pass on every frame: pass another classifier")
    rows = []
    print("| clip | classify every | face-frames | same emotion | max abs dp | mean abs dp | "
          "classify ms/frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with pipeline.one_blas_thread():
        for clip in clips:
            for every in settings:  # 1 first: the reference
                seen, classify_ms = run(classifier, landmarker, clip, every)
                if every == 1:
                    reference = seen
                keys = sorted(set(seen) & set(reference))
                same = sum(seen[k][0] == reference[k][0] for k in keys)
                dp = (np.abs(np.array([seen[k][1] for k in keys])
                             - np.array([reference[k][1] for k in keys]))
                      if keys else np.zeros((1, 1)))
                row = {"clip": clip.name, "classify_every": every, "face_frames": len(keys),
                       "only_in_one_run": len(set(seen) ^ set(reference)),
                       "same_emotion": round(same / max(1, len(keys)), 4),
                       "max_abs_dp": round(float(dp.max()), 4),
                       "mean_abs_dp": round(float(dp.mean()), 4),
                       "classify_ms_per_frame": round(classify_ms, 2)}
                rows.append(row)
                print(f"| {clip.name} | {every} | {len(keys)} | "
                      f"{100 * row['same_emotion']:.1f}% | {row['max_abs_dp']} | "
                      f"{row['mean_abs_dp']} | {row['classify_ms_per_frame']} |", flush=True)
    if args.json:
        write_json(args.json, {"weights": args.weights, "landmarks": pipeline.LANDMARK_WEIGHTS,
                               "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
