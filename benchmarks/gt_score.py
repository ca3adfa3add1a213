"""Score reported face boxes against a ground-truth clip's boxes (benchmarks/gt_clips.py):
recall, false boxes per frame and identity switches.

    python -m benchmarks.gt_score CLIP.json REPORT.csv    (`emotion video CLIP --csv` output)

In each frame, reported boxes and true faces are paired greedily, the pair of highest IoU
first, one to one, and a pair counts when its IoU is >= MATCH_IOU. Why 0.5: it is the
criterion of PASCAL VOC and of WIDER FACE's evaluation, and systems draw a face's box by
different conventions (Haar's square from brow to chin, a mesh's point extents from forehead
to chin): a box on the right face with another convention still overlaps by more than half,
a box on a neighbour or on the background does not.

- recall: matched true faces / true faces, over the frames; a true face counts only when at
  least MIN_VISIBLE of its box is inside the frame (a face half out of view is one no
  detector is asked to find). A report matched to a face less visible than that is ignored:
  neither a hit nor a false box.
- false boxes per frame: reported boxes matched to no true face, divided by the frames.
- identity switches: for each true face, the number of times its matched track ID differs
  from the ID it was last matched to (a frame where it is missed does not reset that). None
  for a system that reports no IDs.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict

MATCH_IOU = 0.5
MIN_VISIBLE = 0.75


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match(truths: list[dict], reports: list[dict]) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairs (truth index, report index, IoU) with IoU >= MATCH_IOU."""
    pairs = sorted(((iou(t["box"], r["box"]), i, j) for i, t in enumerate(truths)
                    for j, r in enumerate(reports)), reverse=True)
    used_t, used_r, out = set(), set(), []
    for value, i, j in pairs:
        if value < MATCH_IOU:
            break
        if i not in used_t and j not in used_r:
            used_t.add(i)
            used_r.add(j)
            out.append((i, j, value))
    return out


def score(truth: dict, reports: dict[int, list[dict]]) -> dict:
    """truth: a gt_clips JSON; reports: frame -> [{"box": (x, y, w, h), "track_id": id or
    None}, ...] (frames without a report may be missing)."""
    true_faces = hits = false_boxes = 0
    ious = []
    has_ids = any(r.get("track_id") is not None for rs in reports.values() for r in rs)
    last_id, switches = {}, 0
    n_frames = truth["frames"]
    for entry in truth["per_frame"]:
        f = entry["frame"]
        faces = entry["faces"]
        frame_reports = reports.get(f, [])
        pairs = match(faces, frame_reports)
        matched_reports = {j for _, j, _ in pairs}
        counted = [t["visible"] >= MIN_VISIBLE for t in faces]
        true_faces += sum(counted)
        false_boxes += len(frame_reports) - len(matched_reports)
        for i, j, value in pairs:
            if not counted[i]:
                continue
            hits += 1
            ious.append(value)
            track = frame_reports[j].get("track_id")
            face = faces[i]["id"]
            if has_ids and track is not None:
                if face in last_id and last_id[face] != track:
                    switches += 1
                last_id[face] = track
    return {
        "frames": n_frames,
        "true_faces": true_faces,
        "recall": round(hits / true_faces, 4) if true_faces else None,
        "false_boxes_per_frame": round(false_boxes / n_frames, 4),
        "id_switches": switches if has_ids else None,
        "mean_matched_iou": round(sum(ious) / len(ious), 3) if ious else None,
    }


def read_video_csv(path) -> dict[int, list[dict]]:
    """`emotion video --csv` rows as frame -> reports (its frame, track_id, x, y, w, h)."""
    reports = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            box = tuple(float(row[k]) for k in ("x", "y", "w", "h"))
            track = row.get("track_id")
            reports[int(row["frame"])].append(
                {"box": box, "track_id": int(float(track)) if track not in (None, "") else None})
    return dict(reports)


def boxes_per_frame(frames: list[list]) -> dict[int, list[dict]]:
    """A peer script's boxes (one list of (x, y, w, h) per frame, no IDs) as reports."""
    return {f: [{"box": tuple(b), "track_id": None} for b in boxes]
            for f, boxes in enumerate(frames)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth", help="a ground-truth clip's JSON (benchmarks/gt_clips.py)")
    parser.add_argument("csv", help="`emotion video CLIP --csv` output for that clip")
    args = parser.parse_args(argv)
    with open(args.truth) as f:
        truth = json.load(f)
    print(json.dumps(score(truth, read_video_csv(args.csv))))


if __name__ == "__main__":
    main()
