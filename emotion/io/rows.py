"""A face as a row or a record: one row per face per frame of a video or stream, as a CSV
table or JSON lines (`emotion video --csv/--jsonl`, `emotion live --jsonl`; the same rows are
what the browser's live socket sends), and one record per face of a still image
(`emotion predict --json`, `emotion.analyze`). Both are made from FaceResult.to_dict, the one
serializer of a face.

A row (`face_rows`, and each JSON line) is

    frame, time_s, track_id, x, y, w, h, angry, disgust, fear, happy, sad, surprise,
    neutral, emotion, intensity, phase,
    "pose": {"yaw", "pitch", "roll"}                  degrees, conventions in emotion.face.pose
    "parts": {"eyes": [[x, y, w, h], ...],            0 or 2, image-left first
              "eyebrows": [[x, y, w, h] or null, ...], one per eye
              "mouth": [x, y, w, h] or null, "eyebrow_raise": float or null}

in frame pixels; what was not found is null or an empty list, never a guess. The CSV
flattens the two into fixed columns (COLUMNS), so that `pandas.read_csv` gives numbers,
with empty cells (NaN) for what is missing:

    yaw, pitch, roll, eye1_x, eye1_y, eye1_w, eye1_h, eye2_..., brow1_..., brow2_...,
    mouth_x, mouth_y, mouth_w, mouth_h, eyebrow_raise

eye1 is the image-left eye, brow1 the eyebrow above it. The probabilities and the pose are
the track's smoothed ones; frames without a face have no row.
"""

from __future__ import annotations

import csv
import json

from emotion.errors import UserError
from emotion.labels import EMOTIONS

POSE_COLUMNS = ["yaw", "pitch", "roll"]


def _box_columns(name: str) -> list[str]:
    return [f"{name}_{k}" for k in ("x", "y", "w", "h")]


PART_COLUMNS = [*_box_columns("eye1"), *_box_columns("eye2"), *_box_columns("brow1"),
                *_box_columns("brow2"), *_box_columns("mouth"), "eyebrow_raise"]
FACE_COLUMNS = ["frame", "time_s", "track_id", "x", "y", "w", "h", *EMOTIONS,
                "emotion", "intensity", "phase"]
COLUMNS = [*FACE_COLUMNS, *POSE_COLUMNS, *PART_COLUMNS]  # the CSV's
JSON_KEYS = [*FACE_COLUMNS, "pose", "parts"]             # a face_rows row's, a JSON line's
TEXT_COLUMNS = ["emotion", "intensity", "phase"]          # the rest hold numbers


def face_rows(frame_index: int, timestamp: float, results) -> list[dict]:
    """The rows (see the module docstring) for the faces of one frame, pose and parts
    nested; `flat_row` makes one a CSV row. Each is made from the face's one record,
    FaceResult.to_dict: the box spread into x, y, w, h and the probabilities into columns."""
    rows = []
    for r in results:
        face = r.to_dict()
        x, y, w, h = face["box"]
        row = {"frame": frame_index, "time_s": round(timestamp, 4), "track_id": face["track_id"],
               "x": x, "y": y, "w": w, "h": h}
        row.update(face["probabilities"])
        row.update({key: face[key] for key in ("emotion", "intensity", "phase", "pose", "parts")})
        rows.append(row)
    return rows


# A face in `emotion predict --json` and `emotion.analyze`: its record without what only a
# video has (track ID, phase) and without the roll, which the pose repeats.
IMAGE_FACE_KEYS = ["box", "emotion", "probabilities", "intensity", "pose", "parts"]


def image_faces(results) -> list[dict]:
    """The faces of one still image, each FaceResult.to_dict's keys IMAGE_FACE_KEYS."""
    return [{key: face[key] for key in IMAGE_FACE_KEYS}
            for face in (r.to_dict() for r in results)]


def image_record(path, results) -> dict:
    """The JSON object for one image (a line of `emotion predict --json`)."""
    return {"file": str(path), "faces": image_faces(results)}


def flat_row(row: dict) -> dict:
    """A face_rows row as the CSV's COLUMNS: the pose and the parts in fixed columns, None
    (an empty cell) for each part not found."""
    flat = {k: v for k, v in row.items() if k not in ("pose", "parts")}
    pose = row.get("pose") or {}
    flat.update({k: pose.get(k) for k in POSE_COLUMNS})
    parts = row.get("parts") or {}
    eyes, brows = parts.get("eyes") or [], parts.get("eyebrows") or []
    boxes = {"eye1": eyes[0] if len(eyes) > 0 else None,
             "eye2": eyes[1] if len(eyes) > 1 else None,
             "brow1": brows[0] if len(brows) > 0 else None,
             "brow2": brows[1] if len(brows) > 1 else None,
             "mouth": parts.get("mouth")}
    for name, box in boxes.items():
        flat.update(zip(_box_columns(name), box if box is not None else [None] * 4))
    flat["eyebrow_raise"] = parts.get("eyebrow_raise")
    return flat


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
        try:
            for row in rows:
                if self.csv is not None:
                    self.csv.writerow(flat_row(row))
                if self.jsonl is not None:
                    self.jsonl.write(json.dumps(row) + "\n")
        except OSError as err:  # a full disk: say which file (write() errors name none)
            raise _naming(err, self.files) from None
        self.rows += len(rows)

    def close(self) -> None:
        files, self.files, failed = self.files, [], None
        for f in files:  # every file is closed, even after one fails to flush
            try:
                f.close()
            except OSError as err:
                failed = failed or _naming(err, [f])
        if failed is not None:
            raise failed


def _naming(err: OSError, files) -> OSError:
    """`err` with the file it concerns (the first of `files` when unknown), for the CLI's
    one-line message."""
    if err.filename is None and files:
        err.filename = files[0].name
    return err
