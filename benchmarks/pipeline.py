"""End-to-end face pipeline benchmark: decode -> detect -> track -> classify -> draw -> encode.

    python -m benchmarks.pipeline [--video PATH ...] [--weights W] [--detect-every K] [--json F]

For each clip (default: woman_talking.mp4 and group_pan.mp4 from ../shared/data/media) it
runs what `emotion video CLIP --out annotated.mp4` runs (emotion.video.loop.FrameLoop, with its
reader and writer threads) and reports frames/s end to end with the time per stage, and,
in the same run, the I/O-only ceiling: the same clip decoded and re-encoded with the same
threads and nothing in between. The ratio of the two says how much of the machine the face
pipeline leaves to I/O. Also the latency of classifying one face (preprocessing + CNN).
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from emotion.video import follow, pipeline
from emotion.video.sources import open_video

MEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/media"
DEFAULT_VIDEOS = [MEDIA / "woman_talking.mp4", MEDIA / "group_pan.mp4"]


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


def io_ceiling(video, out):
    """Frames/s of decoding and re-encoding the clip alone, with FrameLoop's threads."""
    from emotion.video.loop import FrameReader, FrameWriter

    source = open_video(str(video))
    writer = None
    start = time.perf_counter()
    reader = FrameReader(source)
    try:
        for frame in reader:
            if writer is None:
                h, w = frame.image.shape[:2]
                writer = FrameWriter(out, source.fps, (w, h))
            writer.write(frame.image)
    finally:
        reader.stop()
        source.release()
        if writer is not None:
            writer.close()
    return source.frames_read / (time.perf_counter() - start)


def run_clip(classifier, video, detect_every, out, scan_lag=None):
    """`emotion video VIDEO --out OUT` as the command runs it (without its progress bar);
    scan_lag: FollowPipeline's (None: its default)."""
    from emotion.video.loop import FrameLoop

    n_faces = 0
    start = time.perf_counter()
    with FrameLoop(str(video), classifier=classifier, detect_every=detect_every,
                   out=str(out), scan_lag=scan_lag) as loop:
        for frame, results in loop:
            loop.write(loop.draw(frame, results))
            n_faces += len(results)
    wall = time.perf_counter() - start
    return {
        "scan_lag": loop.faces.ahead.lag if loop.faces.ahead else 0,
        "frames": loop.frames_done,
        "faces": n_faces,
        "tracks": len(loop.track_ids),
        "wall_seconds": round(wall, 3),
        "frames_per_second": round(loop.frames_done / wall, 1),
        "ms_per_frame_by_stage": {k: round(v, 2) for k, v in loop.faces.timings.ms_per_frame().items()},
    }


def main(argv=None):
    import tempfile

    import nnlite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", nargs="+", default=[str(v) for v in DEFAULT_VIDEOS])
    parser.add_argument("--weights", default=pipeline.VIDEO_WEIGHTS)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--detect-every", type=int, default=follow.DETECT_EVERY)
    parser.add_argument("--scan-lag", type=int, nargs="+", default=[follow.SCAN_LAG],
                        help="FollowPipeline's scan_lag; several values run one after another "
                        "on each clip (0: the full scan in place)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    for video in args.video:
        if not Path(video).exists():
            raise SystemExit(f"video not found: {video} (pass --video PATH)")
    classifier = pipeline.load_classifier(args.weights, args.backend)
    results = []
    with pipeline.one_blas_thread(), tempfile.TemporaryDirectory() as tmp:  # as `video` runs
        latency = per_face_latency(classifier)
        for video in args.video:
            ceiling = io_ceiling(video, Path(tmp) / "io.mp4")
            for lag in args.scan_lag:
                result = run_clip(classifier, video, args.detect_every,
                                  Path(tmp) / "annotated.mp4", lag)
                result.update(video=str(video), io_ceiling_frames_per_second=round(ceiling, 1),
                              ratio_to_io_ceiling=round(result["frames_per_second"] / ceiling, 3))
                results.append(result)
                print(f"{Path(video).name} (scan lag {result['scan_lag']}): {result['frames']} "
                      f"frames, {result['faces']} faces, {result['tracks']} tracks: "
                      f"{result['frames_per_second']} frames/s end to end with --out, I/O alone "
                      f"{result['io_ceiling_frames_per_second']} frames/s (ratio "
                      f"{result['ratio_to_io_ceiling']}); ms/frame by stage "
                      f"{result['ms_per_frame_by_stage']}")
    summary = dict(
        clips=results, model=classifier.model_name, backend=nnlite.current(),
        detect_every=args.detect_every, per_face_classify_ms=round(latency * 1000, 3),
        machine=f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    )
    print(f"one face classified in {summary['per_face_classify_ms']} ms "
          f"({summary['model']}, {summary['backend']})")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
