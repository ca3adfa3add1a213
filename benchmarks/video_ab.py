"""`emotion video CLIP --csv out.csv` in two source trees, alternated: frames/s as a user sees it.

    python -m benchmarks.video_ab --before BEFORE_TREE [--after .] [--rounds 2]
                                  [--clips PATH ...] [--json out.json]

Each run is the command a user types, in its own process (`python -m emotion video CLIP
--csv OUT`, run with this interpreter from the tree's root, so that tree's `emotion` is
imported): startup, imports, weight loading, decoding and the CSV are all in the wall time.
frames/s = the clip's frames / wall seconds. The trees alternate (before, after, before,
after, ...) clip by clip, so that a slow minute of a shared machine falls on both; the worse
round of each tree is reported beside the median (a user meets the worse one too).

One untimed run per tree comes first, on the shortest clip: Numba compiles the kernels a
tree has not cached yet (a minute or two), which a user pays once, not on every run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine, write_json

MEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/media"
AFTER = Path(__file__).resolve().parents[1]


def frame_count(clip: Path) -> int:
    """The clip's frames, decoded (a container's frame count can be off)."""
    import cv2

    capture, n = cv2.VideoCapture(str(clip)), 0
    while capture.grab():
        n += 1
    capture.release()
    return n


def run_video(tree: Path, clip: Path) -> float:
    """Wall seconds of `python -m emotion video CLIP --csv OUT` run from `tree`'s root."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "emotion", "video", str(clip),
                   "--csv", os.path.join(tmp, "out.csv")]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tree, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not os.path.isfile(os.path.join(tmp, "out.csv")):
            tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"`emotion video {clip.name}` failed in {tree} "
                               f"(exit {done.returncode}): {tail[0]}")
    return seconds


def measure(trees: dict, clips: list[Path], rounds: int) -> dict:
    frames = {clip: frame_count(clip) for clip in clips}
    shortest = min(clips, key=frames.get)
    for tree in trees.values():  # Numba's cache: see the module docstring
        run_video(tree, shortest)
    rows = []
    for clip in clips:
        seconds = {name: [] for name in trees}
        for _ in range(rounds):
            for name, tree in trees.items():
                seconds[name].append(run_video(tree, clip))
        for name in trees:
            fps = [frames[clip] / s for s in seconds[name]]
            rows.append({"clip": clip.name, "tree": name, "path": str(trees[name]),
                         "frames": frames[clip], "seconds": [round(s, 2) for s in seconds[name]],
                         "frames_per_s": [round(f, 1) for f in fps],
                         "worst_frames_per_s": round(min(fps), 1),
                         "median_frames_per_s": round(statistics.median(fps), 1)})
    return {"date": datetime.date.today().isoformat(), "machine": machine(),
            "command": "python -m benchmarks.video_ab " + " ".join(sys.argv[1:]),
            "rounds": rounds, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.video_ab",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the source tree to compare against")
    parser.add_argument("--after", default=str(AFTER), help="the tree measured (default: this one)")
    parser.add_argument("--clips", nargs="+", default=None,
                        help="clips to run (default: every .mp4 of the shared media)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each tree per clip")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    for name, tree in trees.items():
        if not (tree / "emotion" / "__main__.py").is_file():
            print(f"error: --{name} {tree} is not a source tree of this project (no "
                  "emotion/__main__.py)", file=sys.stderr)
            return 2
    clips = [Path(c) for c in args.clips] if args.clips else sorted(MEDIA.glob("*.mp4"))
    missing = [str(c) for c in clips if not c.is_file()]
    if not clips or missing:
        print(f"error: no clip at {', '.join(missing) or MEDIA} (pass --clips PATH ...)",
              file=sys.stderr)
        return 2
    try:
        result = measure(trees, clips, args.rounds)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in result["rows"]:
        print(f"{row['clip']:24s} {row['tree']:6s} {row['frames']:4d} frames  "
              f"{row['seconds']} s  frames/s {row['frames_per_s']}  worst "
              f"{row['worst_frames_per_s']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
