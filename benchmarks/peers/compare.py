"""Our video pipeline against its peers' on every shared clip and the ground-truth clips,
alternated, each as a user runs it (a subprocess, start-up included).

    python -m benchmarks.peers [--rounds 2] [--clips ...] [--systems ours mediapipe fer] [--json F]

- ours: `python -m emotion video CLIP --csv F` from this tree, read back from its CSV;
- mediapipe: benchmarks/peers/mediapipe_mesh.py in MediaPipe's venv (--mediapipe-python);
- fer: benchmarks/peers/fer_pipeline.py in fer's venv (--fer-python).

A peer whose venv is absent (as in CI) is skipped with the reason. Rounds run every clip
and every system in turn, the systems' order rotated each round, so that the noise of a
shared machine lands on all of them alike; the figure kept is each one's worse round.
frames/s is the whole run's (start-up, model loading and decoding included); a peer's loop
alone is also given (its script's own clock, start-up excluded). On a ground-truth clip
each run is scored by benchmarks.gt_score.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import os
import time
from pathlib import Path

from benchmarks import gt_clips, gt_score

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SHARED_CLIPS = sorted(gt_clips.MEDIA.glob("*.mp4"))
# Each peer runs in a virtual environment of its own, beside the project's folder by default
# (../mpvenv, ../fervenv), or where MEDIAPIPE_PYTHON / FER_PYTHON point.
MPVENV = Path(os.environ.get("MEDIAPIPE_PYTHON", ROOT.parent / "mpvenv" / "bin" / "python"))
FERVENV = Path(os.environ.get("FER_PYTHON", ROOT.parent / "fervenv" / "bin" / "python"))
PEERS = {
    "mediapipe": (str(MPVENV), "mediapipe_mesh.py",
                  "MediaPipe 0.10.21 runs only in its own venv: python3 -m venv ../mpvenv && "
                  "../mpvenv/bin/pip install mediapipe==0.10.21 opencv-python (or set "
                  "MEDIAPIPE_PYTHON)"),
    "fer": (str(FERVENV), "fer_pipeline.py",
            "fer runs in its own venv (or set FER_PYTHON): python3 -m venv ../fervenv && "
            "../fervenv/bin/pip install --no-deps fer ai-edge-litert && ../fervenv/bin/pip "
            "install numpy "
            "'opencv-python-headless<5' requests Pillow flatbuffers ml_dtypes protobuf tqdm "
            "typing-extensions backports.strenum"),
}


def peer_status(name: str, python: str) -> str | None:
    """None when the peer can run, else why it is skipped."""
    if not Path(python).is_file():
        return f"{name} skipped: {python} not found ({PEERS[name][2]})"
    return None


def run_ours(clip: Path, tmp: Path) -> dict:
    out = tmp / f"{clip.stem}.csv"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "emotion", "video", str(clip), "--csv", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"emotion video {clip} failed: {done.stderr.strip()[-500:]}")
    reports = gt_score.read_video_csv(out)
    frames = frame_count(clip)
    return {"frames": frames, "wall_seconds": wall, "reports": reports,
            "tracks": len({r["track_id"] for rs in reports.values() for r in rs})}


def run_peer(name: str, python: str, clip: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([python, str(HERE / PEERS[name][1]), str(clip)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name} on {clip} failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"frames": result["frames"], "wall_seconds": wall,
            "loop_frames_per_second": result["frames_per_second"],
            "startup_seconds": result["startup_seconds"], "version": result["version"],
            "reports": gt_score.boxes_per_frame(result["boxes"]), "tracks": None}


def frame_count(clip: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(clip))
    n = 0
    while capture.grab():
        n += 1
    capture.release()
    return n


def summarise(run: dict, truth: dict | None) -> dict:
    """A run's figures: frames/s (whole run), faces per frame, and the GT scores."""
    faces = sum(len(r) for r in run["reports"].values())
    row = {"frames": run["frames"], "wall_seconds": round(run["wall_seconds"], 2),
           "frames_per_second": round(run["frames"] / run["wall_seconds"], 2),
           "loop_frames_per_second": run.get("loop_frames_per_second"),
           "faces_per_frame": round(faces / max(1, run["frames"]), 3),
           "frames_with_a_face": sum(1 for r in run["reports"].values() if r),
           "tracks": run["tracks"]}
    if truth is not None:
        row.update(gt_score.score(truth, run["reports"]))
    return row


def compare(clips: list[Path], systems: list[str], pythons: dict, rounds: int) -> dict:
    """{"skipped": {system: reason}, "clips": {clip: {system: [round figures, ...]}}}."""
    skipped = {s: peer_status(s, pythons[s]) for s in systems if s != "ours"}
    skipped = {s: why for s, why in skipped.items() if why}
    for why in skipped.values():
        print(why)
    active = [s for s in systems if s not in skipped]
    truths = {}
    for clip in clips:
        labels = clip.with_suffix(".json")
        if labels.exists():
            truths[clip] = json.loads(labels.read_text())
    results = {str(c): {s: [] for s in active} for c in clips}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            order = active[k % len(active):] + active[:k % len(active)] if active else []
            for clip in clips:
                for system in order:
                    if system == "ours":
                        run = run_ours(clip, Path(tmp))
                    else:
                        run = run_peer(system, pythons[system], clip)
                    row = summarise(run, truths.get(clip))
                    results[str(clip)][system].append(row)
                    print(f"round {k + 1} {clip.name} {system}: {json.dumps(row)}", flush=True)
    return {"skipped": skipped, "clips": results}


def worst(rows: list[dict]) -> dict:
    """The worse round of each figure: the lower frames/s and recall, the higher false boxes
    and switches."""
    out = dict(rows[0])
    for key, pick in (("frames_per_second", min), ("loop_frames_per_second", min),
                      ("recall", min), ("false_boxes_per_frame", max), ("id_switches", max)):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = pick(values) if values else None
    out["frames_per_second_rounds"] = [r["frames_per_second"] for r in rows]
    return out


def report(results: dict) -> list[dict]:
    """One line per clip and system, with ratios of frames/s to ours; printed and returned."""
    table = []
    for clip, by_system in results["clips"].items():
        worse = {s: worst(rows) for s, rows in by_system.items() if rows}
        ours = worse.get("ours", {}).get("frames_per_second")
        for system, row in worse.items():
            row = {"clip": Path(clip).stem, "system": system, **row}
            if ours and system != "ours":
                row["ours_over_peer"] = round(ours / row["frames_per_second"], 3)
            table.append(row)
    from benchmarks import print_table

    print_table(table, [("clip", "clip", "{}"), ("system", "system", "{}"),
                        ("frames_per_second", "frames/s (worse)", "{:.1f}"),
                        ("loop_frames_per_second", "loop only", "{:.1f}"),
                        ("ours_over_peer", "ours/peer", "{:.2f}"),
                        ("faces_per_frame", "faces/frame", "{:.2f}"),
                        ("tracks", "tracks", "{}"), ("recall", "recall", "{:.3f}"),
                        ("false_boxes_per_frame", "false/frame", "{:.3f}"),
                        ("id_switches", "ID switches", "{}")])
    for system, why in results["skipped"].items():
        print(f"{system}: {why}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", type=Path, default=None,
                        help="default: every shared clip and the ground-truth clips")
    parser.add_argument("--systems", nargs="+", default=["ours", "mediapipe", "fer"],
                        choices=["ours", "mediapipe", "fer"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mediapipe-python", default=PEERS["mediapipe"][0])
    parser.add_argument("--fer-python", default=PEERS["fer"][0])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    clips = args.clips
    if clips is None:
        clips = SHARED_CLIPS + [video for video, _ in gt_clips.make_all()]
    for clip in clips:
        if not clip.exists():
            raise SystemExit(f"clip not found: {clip} (pass --clips PATH ...)")
    pythons = {"mediapipe": args.mediapipe_python, "fer": args.fer_python}
    results = compare(clips, args.systems, pythons, args.rounds)
    table = report(results)
    if args.json:
        from benchmarks import machine, write_json

        write_json(args.json, {"command": " ".join(["python -m benchmarks.peers", *(argv or sys.argv[1:])]),
                               "machine": machine(), "rounds": args.rounds,
                               "skipped": results["skipped"], "table": table})
    return table
