"""`emotion video INPUT --out annotated.mp4 [--csv F | --jsonl F]`: annotate a whole video.

Every input frame is written to the output video, with or without faces, so the output
has the input's length and frame rate. The optional table has one row per face per frame:

    frame, time_s, track_id, x, y, w, h, angry, disgust, fear, happy, sad, surprise,
    neutral, emotion, intensity, phase

(frames without a face have no row). The probabilities are the track's smoothed ones.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from tqdm import tqdm

from emotion import pipeline
from emotion.errors import UserError
from emotion.labels import EMOTIONS
from emotion.sources import (check_output_paths, count_frames, open_video, open_writer,
                             plural)

COLUMNS = ["frame", "time_s", "track_id", "x", "y", "w", "h", *EMOTIONS,
           "emotion", "intensity", "phase"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video file (or stream URL) to annotate")
    parser.add_argument("--out", help="annotated video to write (.mp4, mp4v codec)")
    parser.add_argument("--csv", help="write one row per face per frame to this CSV file")
    parser.add_argument("--jsonl", help="write the same rows as JSON lines to this file")
    parser.add_argument("--weights", default="compact",
                        help="weight file, or a shipped model name: 'compact' (default: 61 "
                             "frames/s, 67.3%% on PrivateTest) or 'default' (38 frames/s, 69.5%%)")
    parser.add_argument("--backend", help="nnlite backend: numpy, numba or cuda")
    parser.add_argument("--detect-every", type=int, default=2, metavar="K",
                        help="run the face detector on every K-th frame (default 2); boxes "
                             "are carried in between, faces are classified on every frame")


def face_rows(frame_index: int, timestamp: float, results) -> list[dict]:
    """The table rows (see COLUMNS) for the faces of one frame."""
    rows = []
    for r in results:
        x, y, w, h = (int(v) for v in r.box)
        row = {"frame": frame_index, "time_s": round(timestamp, 4), "track_id": r.track_id,
               "x": x, "y": y, "w": w, "h": h}
        row.update({name: round(float(p), 4) for name, p in zip(EMOTIONS, r.probabilities)})
        row.update(emotion=r.emotion, intensity=r.intensity, phase=r.phase)
        rows.append(row)
    return rows


class RowWriter:
    """Writes face rows to a CSV file, a JSON-lines file, both, or neither."""

    def __init__(self, csv_path: str | None = None, jsonl_path: str | None = None):
        self.files = []
        self.csv = self.jsonl = None
        try:
            if csv_path:
                f = self._open(csv_path)
                self.csv = csv.DictWriter(f, fieldnames=COLUMNS)
                self.csv.writeheader()
            if jsonl_path:
                self.jsonl = self._open(jsonl_path)
        except UserError:
            self.close()
            raise
        self.rows = 0

    def _open(self, path: str):
        try:
            f = open(path, "w", newline="", encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot write {path}: {err.strerror}") from None
        self.files.append(f)
        return f

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            if self.csv is not None:
                self.csv.writerow(row)
            if self.jsonl is not None:
                self.jsonl.write(json.dumps(row) + "\n")
        self.rows += len(rows)

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


def run(args) -> int:
    with pipeline.one_blas_thread():
        return _run(args)


def _run(args) -> int:
    if not (args.out or args.csv or args.jsonl):
        raise UserError("nothing to write: give --out VIDEO and/or --csv FILE / --jsonl FILE")
    if args.detect_every < 1:
        raise UserError("--detect-every must be 1 or more")
    check_output_paths({"--out": args.out, "--csv": args.csv, "--jsonl": args.jsonl},
                       source=args.input)
    source = open_video(args.input)
    writer = rows = None
    try:
        classifier = pipeline.load_classifier(args.weights, args.backend)
        faces = pipeline.FacePipeline(classifier, detect_every=args.detect_every)
        rows = RowWriter(args.csv, args.jsonl)
        track_ids = set()
        progress = tqdm(total=source.frame_count, unit="frame", desc="emotion video",
                        file=sys.stderr, dynamic_ncols=True)
        with progress:
            for frame in source.frames():
                results = faces.process(frame.image, frame.timestamp)
                track_ids.update(r.track_id for r in results)
                rows.write(face_rows(frame.index, frame.timestamp, results))
                if args.out:
                    if writer is None:  # the size is known only once a frame is decoded
                        h, w = frame.image.shape[:2]
                        writer = open_writer(args.out, source.fps, (w, h))
                    writer.write(faces.draw(frame.image, results))
                progress.update(1)
    finally:
        source.release()
        if writer is not None:
            writer.release()
        if rows is not None:
            rows.close()
    faces.timings.add("decode", source.read_seconds)

    if source.frames_read == 0:
        raise UserError(f"could not read any frame from {args.input}: empty or corrupt video")
    print(f"{source.end_message()}; {plural(len(track_ids), 'face track')}, "
          f"{plural(rows.rows, 'row')}", file=sys.stderr)
    print(f"pipeline: {faces.timings.summary()}", file=sys.stderr)
    if args.out:
        written = count_frames(args.out, decode=False)
        if written != source.frames_read:
            raise UserError(f"{args.out} has {written} frames but {source.frames_read} were "
                            f"read: the video writer dropped frames", exit_code=1)
        print(f"wrote {args.out} ({plural(written, 'frame')})", file=sys.stderr)
    # Last, so that it is the line the user sees. What was written is valid, hence exit 0.
    warning = source.truncation_warning()
    if warning:
        print(f"emotion video: warning: {warning}", file=sys.stderr)
    if source.stopped_early:  # a stream URL that broke off
        return 1
    return 0
