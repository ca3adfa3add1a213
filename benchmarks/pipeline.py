"""End-to-end face pipeline benchmark: decode -> detect -> track -> classify -> draw.

    python -m benchmarks.pipeline [--video PATH] [--weights W] [--detect-every K] [--json F]

Processes the whole clip without a display and without writing video, and reports frames/s
with the time split by stage, plus the latency of classifying one face (preprocessing + CNN)
measured on its own. Default clip: ../shared/data/media/woman_talking.mp4.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from emotion import pipeline
from emotion.sources import open_video

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared/data/media/woman_talking.mp4"


def per_face_latency(classifier, reps=200):
    """Median seconds to classify one 120x120 gray face crop (resize, preprocess, CNN)."""
    crop = np.random.default_rng(0).integers(0, 256, (120, 120), dtype=np.uint8)
    for _ in range(10):
        classifier.predict_faces([crop])
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        classifier.predict_faces([crop])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_clip(classifier, video, detect_every):
    faces = pipeline.FacePipeline(classifier, detect_every=detect_every)
    source = open_video(str(video))
    n_faces = 0
    start = time.perf_counter()
    try:
        for frame in source.frames():
            results = faces.process(frame.image, frame.timestamp)
            faces.draw(frame.image, results)
            n_faces += len(results)
    finally:
        source.release()
    wall = time.perf_counter() - start
    faces.timings.add("decode", source.read_seconds)
    return {
        "frames": source.frames_read,
        "faces": n_faces,
        "wall_seconds": round(wall, 3),
        "frames_per_second": round(source.frames_read / wall, 1),
        "ms_per_frame_by_stage": {k: round(v, 2) for k, v in faces.timings.ms_per_frame().items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--weights", default=None, help="default: the shipped weights")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--detect-every", type=int, default=pipeline.DETECT_EVERY)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not Path(args.video).exists():
        raise SystemExit(f"video not found: {args.video} (pass --video PATH)")
    classifier = pipeline.load_classifier(args.weights, args.backend)
    import nnlite

    with pipeline.one_blas_thread():  # as the video/live commands run
        latency = per_face_latency(classifier)
        result = run_clip(classifier, args.video, args.detect_every)
    result.update(
        video=str(args.video), model=classifier.model_name, backend=nnlite.current(),
        detect_every=args.detect_every, per_face_classify_ms=round(latency * 1000, 3),
        machine=f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    )
    print(f"{result['frames']} frames, {result['faces']} faces: "
          f"{result['frames_per_second']} frames/s; ms/frame by stage "
          f"{result['ms_per_frame_by_stage']}; one face classified in "
          f"{result['per_face_classify_ms']} ms ({result['model']}, {result['backend']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
