"""FER+ labels: the majority vote of ten annotators per FER2013 row, in place of the original
label (`--ferplus`), or the votes themselves as a distribution over the 7 classes
(`--ferplus-targets votes`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import NUM_CLASSES
from emotion.training.data.csv_file import usage_codes
from emotion.training.data.dataset import (FERPLUS_TO_FER2013, FERPLUS_VOTES, SPLITS,
                                           UNASSIGNED, describe_where, Table)

def find_ferplus(path: Path) -> Path:
    if path.is_dir():
        for name in ("fer2013new.csv", "fer2013new.csv.gz"):
            if (path / name).is_file():
                return path / name
    if not path.is_file():
        raise UserError(f"FER+ labels not found at {path}: pass the fer2013new.csv(.gz) file "
                        "from github.com/microsoft/FERPlus (or the folder holding it)")
    return path.resolve()


def find_ferplus_beside(source: Path) -> Path | None:
    """The FER+ file that goes with a FER2013 source, if one lies where this project keeps it:
    fer2013new.csv(.gz) in the source's folder or in its ferplus/ subfolder, or, for the
    data/fer2013/fer2013.csv layout, in the sibling data/ferplus/."""
    folder = source if source.is_dir() else source.parent
    candidates = [folder, folder / "ferplus"]
    if folder.name.lower() == "fer2013":
        candidates.append(folder.parent / "ferplus")
    for candidate in candidates:
        for name in ("fer2013new.csv", "fer2013new.csv.gz"):
            if (candidate / name).is_file():
                return candidate / name
    return None


def majority_for_split(ferplus: Path, dataset, split: str) -> np.ndarray:
    """The FER+ majority label (ferplus_labels: -1 where there is none) of each image of a
    loaded FER2013 split, matched row by row: (N,) int64 in the split's order."""
    if dataset.layout == "folders":
        raise UserError("FER+ labels follow the row order of fer2013.csv; they cannot be "
                        f"matched to the image folder {dataset.source}. Pass the CSV as --data.")
    labels, usage = ferplus_labels(ferplus)
    if len(labels) != dataset.source_rows:
        raise UserError(f"{ferplus} has {len(labels)} rows but {dataset.source.name} has "
                        f"{dataset.source_rows}: FER+ labels must come with the fer2013.csv "
                        "they were made for (one row per row, same order)")
    at = dataset.rows[split] - 1
    if split not in dataset.drawn_splits:
        mismatch = np.flatnonzero(usage[at] != SPLITS.index(split))
        if mismatch.size:
            raise UserError(f"{ferplus} does not line up with {dataset.source.name}: "
                            f"{describe_where(int(at[mismatch[0]]) + 1)} has a different "
                            "Usage in the two files")
    return labels[at]


def ferplus_labels(path) -> tuple[np.ndarray, np.ndarray]:
    """FER+ majority labels mapped to FER2013 classes: (labels (M,) int64, usage (M,) int64).

    Each row's label is the column with the most votes among the 10 FER+ columns. FER+ columns
    neutral, happiness, surprise, sadness, anger, disgust, fear map to FER2013 classes
    6, 3, 5, 4, 0, 1, 2. The label is -1 (the row is to be dropped) when the winner is
    contempt (no FER2013 class), unknown or NF (not a face), when two columns tie for the
    most votes (no majority), or when FER+ left the image name blank (not a face).
    `usage` is the row's split as an index into SPLITS (UNKNOWN_USAGE if it is none).
    """
    votes, not_a_face, usage = _read_votes(path)
    winner = votes.argmax(axis=1)
    top = votes.max(axis=1)
    tie = (votes == top[:, None]).sum(axis=1) > 1
    labels = FERPLUS_TO_FER2013[winner]
    labels[tie | not_a_face | (top == 0)] = -1
    return labels, usage


def ferplus_votes(path) -> tuple[np.ndarray, np.ndarray]:
    """The annotators' votes as a distribution over FER2013's 7 classes: (votes (M, 7)
    float32, usage (M,) int64).

    The contempt, unknown and NF columns are dropped (FER2013 has no such class) and each
    row's remaining votes are divided by their sum, so a row reads "sad 0.6, neutral 0.4";
    a tie stays a tie (0.5 and 0.5), which is what it says about the face. A row with no vote
    left, or a blank image name (not a face), is all zeros: the caller drops it.
    """
    votes, not_a_face, usage = _read_votes(path)
    emotion_columns = np.flatnonzero(FERPLUS_TO_FER2013 >= 0)
    counts = np.zeros((len(votes), NUM_CLASSES))
    counts[:, FERPLUS_TO_FER2013[emotion_columns]] = votes[:, emotion_columns]
    counts[not_a_face] = 0
    total = counts.sum(axis=1, keepdims=True)
    distribution = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return distribution.astype(np.float32), usage


def _read_votes(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vote counts (M, 10) float64 in FERPLUS_VOTES order, not_a_face (M,) bool, usage (M,))
    of a fer2013new.csv, every count checked."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype={"Usage": str, "Image name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise UserError(f"{path}: not a readable FER+ CSV ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("Usage", "Image name", *FERPLUS_VOTES) if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: not a FER+ fer2013new.csv, missing columns {missing}")
    votes = frame[list(FERPLUS_VOTES)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if not np.isfinite(votes).all() or (votes < 0).any():
        row = int(np.flatnonzero(~(np.isfinite(votes) & (votes >= 0)).all(axis=1))[0]) + 1
        raise UserError(f"{path}: {describe_where(row)} has a vote count that is not a "
                        "non-negative number")
    not_a_face = frame["Image name"].str.strip().to_numpy() == ""
    return votes, not_a_face, usage_codes(frame["Usage"].str.strip())


def apply_ferplus(table: Table, source: Path, ferplus: Path,
                  targets: str = "majority") -> tuple[Table, int, np.ndarray | None]:
    """The table with FER+ labels, minus the rows FER+ gives no FER2013 class:
    (table, rows dropped, the kept rows' vote distributions (N, 7) float32 or None).

    targets="majority": every split keeps the rows with a 7-class majority (ferplus_labels).
    targets="votes": Training keeps every row with a valid vote (ties and rows whose
    majority is contempt or unknown included: their votes still say something), labelled by
    the majority where there is one, else by the distribution's largest class (the first of
    a tie); PublicTest and PrivateTest stay the majority rows, so that a votes run and a
    majority run are chosen and scored on the same faces.
    """
    if table.layout == "folders":
        raise UserError("FER+ labels follow the row order of fer2013.csv; they cannot be "
                        f"matched to the image folder {source}. Pass the CSV as --data.")
    labels, usage = ferplus_labels(ferplus)
    if len(labels) != table.n_rows:
        raise UserError(f"{ferplus} has {len(labels)} rows but {source.name} has {table.n_rows}: "
                        "FER+ labels must come with the fer2013.csv they were made for "
                        "(one row per row, same order)")
    at = table.rows - 1  # each kept image's row in the FER+ file
    if (table.usage != UNASSIGNED).all():
        mismatch = np.flatnonzero(usage[at] != table.usage)
        if mismatch.size:
            row = int(table.rows[mismatch[0]])
            raise UserError(f"{ferplus} does not line up with {source.name}: "
                            f"{describe_where(row)} has a different Usage in the two files")
        new_usage = table.usage
    else:
        new_usage = usage[at]  # no Usage in the source: FER+ supplies the standard split
    new_labels = labels[at]
    keep = new_labels >= 0
    votes = None
    if targets == "votes":
        votes = ferplus_votes(ferplus)[0][at]
        training = new_usage == SPLITS.index("Training")
        has_vote = votes.sum(axis=1) > 0
        new_labels = np.where(keep, new_labels, votes.argmax(axis=1))
        keep = np.where(training, has_vote, keep)
        votes = votes[keep]
    elif targets != "majority":
        raise ValueError(f"targets must be 'majority' or 'votes', got {targets!r}")
    relabelled = Table(images=table.images[keep], labels=new_labels[keep],
                        usage=new_usage[keep], rows=table.rows[keep], n_rows=table.n_rows,
                        layout=table.layout, skipped=table.skipped)
    return relabelled, int((~keep).sum()), votes
