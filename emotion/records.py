"""The per-face rows of a video or stream: one row per face per frame, as a CSV table or
JSON lines (`emotion video --csv/--jsonl`, `emotion live --jsonl`; the same schema is what
the browser's live socket sends).

    frame, time_s, track_id, x, y, w, h, angry, disgust, fear, happy, sad, surprise,
    neutral, emotion, intensity, phase

The probabilities are the track's smoothed ones; frames without a face have no row.
"""

from __future__ import annotations

import csv
import json

from emotion.errors import UserError
from emotion.labels import EMOTIONS

COLUMNS = ["frame", "time_s", "track_id", "x", "y", "w", "h", *EMOTIONS,
           "emotion", "intensity", "phase"]


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
