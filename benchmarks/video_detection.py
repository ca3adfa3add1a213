"""Detection and tracking on every shared clip, without the CNN: how the video presets are
chosen.

    python -m benchmarks.video_detection [--near-face-px 48 32] [--near-every 1 2]
        [--detect-every 10 15] [--scan-scale 1.1 1.2] [--scan-lag 0 3]
        [--near-sizes 0.7,1.5 0.8,1.25] [--json F]

A constant classifier isolates detection and tracking. For each shared clip (every .mp4 in
../shared/data/media) and each setting it runs the video pipeline as `emotion video` does
(emotion.video.pipeline.FacePipeline with its defaults, parts and rotated search included) and
reports the faces per frame as a histogram (index = faces), the track IDs, and the detect
and parts time per frame. A setting is the window-search scale (`--near-face-px`: the
face's width in the scaled window, emotion.face.detector.NEAR_FACE_PX) and how often each track's
window is searched (`--near-every`: emotion.video.pipeline.NEAR_EVERY), how often the whole frame
is scanned (`--detect-every`), the scan's pyramid step (`--scan-scale`:
emotion.face.detector.VIDEO_CONFIG.scale_factor) and how many frames a scan runs beside on its
worker thread before its faces join (`--scan-lag`: emotion.video.pipeline.SCAN_LAG; 0 = in place)
and the face sizes a window search looks for, relative to the track's box (`--near-sizes`:
emotion.face.detector.NEAR_SIZES). Times are wall times on
whatever the machine is doing: compare settings within one run only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from emotion.face import detector as detect

from emotion.video import pipeline
from emotion.labels import NUM_CLASSES

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"


class ConstantClassifier:
    def predict_faces(self, crops):
        return np.full((len(crops), NUM_CLASSES), 1.0 / NUM_CLASSES, np.float32)


def run(clip: Path, near_face_px: int, near_every: int, detect_every: int,
        scan_scale: float, scan_lag: int = pipeline.SCAN_LAG,
        near_sizes: tuple[float, float] = detect.NEAR_SIZES) -> dict:
    detector = detect.FaceDetector(replace(detect.VIDEO_CONFIG, scale_factor=scan_scale))
    faces = pipeline.FacePipeline(ConstantClassifier(), detector=detector,
                                  near_every=near_every, detect_every=detect_every,
                                  scan_lag=scan_lag)
    capture = cv2.VideoCapture(str(clip))
    counts, ids = [], set()
    start = time.perf_counter()
    kept = detect.NEAR_FACE_PX, detect.NEAR_SIZES  # read by each detect_near
    detect.NEAR_FACE_PX, detect.NEAR_SIZES = near_face_px, near_sizes
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            results = faces.process(frame)
            counts.append(len(results))
            ids.update(r.track_id for r in results)
    finally:
        detect.NEAR_FACE_PX, detect.NEAR_SIZES = kept
        capture.release()
    split = faces.timings.ms_per_frame()
    return {"clip": clip.name, "near_face_px": near_face_px, "near_every": near_every,
            "detect_every": detect_every, "scan_scale": scan_scale, "scan_lag": scan_lag,
            "near_sizes": list(near_sizes),
            "frames": len(counts), "faces_per_frame": np.bincount(counts).tolist(),
            "track_ids": len(ids), "detect_ms": round(split.get("detect", 0.0), 2),
            "parts_ms": round(split.get("parts", 0.0), 2),
            "wall_s": round(time.perf_counter() - start, 2)}


def sizes(text: str) -> tuple[float, float]:
    """'0.8,1.25' -> (0.8, 1.25), for --near-sizes."""
    low, high = (float(v) for v in text.split(","))
    return low, high


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=None,
                        help="default: every .mp4 in ../shared/data/media")
    parser.add_argument("--near-face-px", type=int, nargs="+", default=[detect.NEAR_FACE_PX])
    parser.add_argument("--near-every", type=int, nargs="+", default=[pipeline.NEAR_EVERY])
    parser.add_argument("--detect-every", type=int, nargs="+", default=[pipeline.DETECT_EVERY])
    parser.add_argument("--scan-scale", type=float, nargs="+",
                        default=[detect.VIDEO_CONFIG.scale_factor])
    parser.add_argument("--scan-lag", type=int, nargs="+", default=[pipeline.SCAN_LAG])
    parser.add_argument("--near-sizes", type=sizes, nargs="+", default=[detect.NEAR_SIZES],
                        metavar="LOW,HIGH")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    clips = [Path(c) for c in args.clips] if args.clips else sorted(MEDIA.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips: {MEDIA} holds no .mp4 (pass --clips)")
    rows = []
    print("| clip | window px | window sizes | window every | scan every | scan step | scan lag "
          "| faces per frame (index = faces) | IDs | detect ms | parts ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    settings = itertools.product(args.near_face_px, args.near_sizes, args.near_every,
                                 args.detect_every, args.scan_scale, args.scan_lag)
    for px, near_sizes, every, scan_every, scale, lag in settings:
        for clip in clips:
            row = run(clip, px, every, scan_every, scale, lag, near_sizes)
            rows.append(row)
            print(f"| {row['clip']} | {px} | {near_sizes[0]}-{near_sizes[1]} | {every} | "
                  f"{scan_every} | {scale} | {lag} | {row['faces_per_frame']} | "
                  f"{row['track_ids']} | {row['detect_ms']} | {row['parts_ms']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
