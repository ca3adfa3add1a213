"""What a short run pays before its first face: start-up measured apart from the work.

    python -m benchmarks.startup [--rounds 3] [--weights mobile_face] [--json F]

Each round is a fresh process (a user's `emotion predict photo.jpg` or a short clip starts
one), timing in order:

    python      the interpreter up to running this script (the parent's clock around a
                process that does nothing; subtracted from nothing, shown for scale)
    imports     numpy, OpenCV and the emotion package as the CLI imports them
    load        EmotionClassifier.load: the weight file read and the model built and folded,
                which also imports nnlite and Numba and chooses the backend
    first pass  the first face through the model: Numba loads each kernel from its on-disk
                cache (or compiles it, the first time on a machine: minutes)
    next pass   the same face again: what every later face costs
    detector    FaceDetector(PHOTO_CONFIG): the Haar cascade read from OpenCV's files

The medians over the rounds are printed, with the machine; the first round after a change
of nnlite's kernels compiles them, so run it twice and read the second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, cv2
import emotion.cli
t1 = time.perf_counter()
from emotion.cnn.classifier import EmotionClassifier
from emotion.video.pipeline import one_blas_thread
with one_blas_thread():
    classifier = EmotionClassifier.load(sys.argv[1])
    t2 = time.perf_counter()
    crop = np.random.default_rng(0).integers(0, 256, (120, 120), dtype=np.uint8)
    run = classifier.predict_geometry if classifier.has_geometry else classifier.predict_faces
    run([crop])
    t3 = time.perf_counter()
    run([crop])
    t4 = time.perf_counter()
from emotion.face.detector import PHOTO_CONFIG, FaceDetector
FaceDetector(PHOTO_CONFIG)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first pass": t3 - t2,
                  "next pass": t4 - t3, "detector": t5 - t4}))
"""


def one_round(weights: str) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - start
    out = subprocess.run([sys.executable, "-c", CHILD, weights], check=True,
                         capture_output=True, text=True).stdout
    return {"python": python, **json.loads(out.strip().splitlines()[-1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", default="mobile_face")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rounds = [one_round(args.weights) for _ in range(args.rounds)]
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    for name, seconds in medians.items():
        print(f"{name:10s} {seconds * 1000:8.1f} ms")
    if args.json:
        from benchmarks import write_json

        write_json(args.json, {"command": f"python -m benchmarks.startup --weights {args.weights}",
                               "rounds": rounds, "median_seconds": medians})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
