"""`load_fer2013`: any layout in, the same `FER2013` out; splitting rows that name no split,
and the messages about rows that were skipped."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import NUM_CLASSES
from emotion.training.data.cache import load_cache, save_cache, source_signature
from emotion.training.data.csv_file import read_fer_csv
from emotion.training.data.dataset import (FER2013, SPLITS, TEST_FRACTION, UNASSIGNED,
                                           describe_where, Table, find_dataset)
from emotion.training.data.ferplus import apply_ferplus, find_ferplus
from emotion.training.data.folders import read_image_folder
from emotion.training.data.npz import read_npz

def load_fer2013(path=None, *, skip_bad_rows=False, ferplus=None, ferplus_targets="majority",
                 val_fraction=0.1, seed=0, cache=True) -> FER2013:
    """Load FER2013 from a CSV (any of the layouts in the module docstring) or an image folder.

    path:          file or folder; None looks in $EMOTION_DATA, then data/ (see find_dataset)
    skip_bad_rows: leave out malformed rows (wrong pixel count, non-numeric or out-of-range
                   pixels, unknown label or Usage, unreadable images) and list them in
                   `skipped_rows`, instead of stopping at the first with a UserError
    ferplus:       a FER+ fer2013new.csv(.gz) whose majority vote replaces the labels
                   (see `ferplus_labels`); only for the CSV layouts, whose rows it matches
    ferplus_targets: "majority", or "votes": Training also keeps the rows without a majority,
                   and `votes` holds each row's vote distribution (see `apply_ferplus`)
    val_fraction:  share of each class made PublicTest when the source has no such split
    seed:          seeds those random splits (same seed, same split)
    cache:         reuse / write the parsed arrays as `<source>.cache.npz` (or in
                   $EMOTION_CACHE, default ~/.cache/emotion, when the source's folder is
                   read-only); the cache is rebuilt whenever the source's size or mtime changes
    """
    if not 0.0 <= val_fraction < 1.0 - TEST_FRACTION:
        raise UserError(f"val_fraction must be in [0, {1 - TEST_FRACTION:g}), got {val_fraction}")
    source = find_dataset(path).resolve()
    _check_supported(source)

    if source.suffix.lower() == ".npz":  # compact arrays already: nothing to parse or cache
        table, from_cache = read_npz(source), False
    else:
        table, from_cache = _parse_with_cache(source, cache)

    if table.skipped:
        if not skip_bad_rows:
            # Worded for the command line, the common case; in Python the same switch is the
            # skip_bad_rows argument, which a reader of this signature finds at once.
            raise UserError(f"{source}: {describe_where(table.skipped[0][0])} "
                            f"{table.skipped[0][1]}.{_more_bad_rows(table.skipped[1:])} "
                            "Fix the file, or leave the bad rows out with --skip-bad-rows.")
        print(_skip_summary(source, table.skipped), file=sys.stderr)

    dropped, votes = 0, None
    if ferplus is not None:
        ferplus = find_ferplus(Path(ferplus).expanduser())
        table, dropped, votes = apply_ferplus(table, source, ferplus, ferplus_targets)

    splits, drawn, rows, split_votes = _split(table, val_fraction, seed, votes)
    return FER2013(splits=splits, source=source, layout=table.layout,
                   skipped_rows=list(table.skipped), ferplus=ferplus, ferplus_dropped=dropped,
                   from_cache=from_cache, drawn_splits=drawn, rows=rows, votes=split_votes,
                   source_rows=table.n_rows)


def _parse_with_cache(source: Path, cache: bool) -> tuple[Table, bool]:
    """(parsed table, whether it came from the cache) for a CSV file or an image folder."""
    signature = source_signature(source)
    table = load_cache(source, signature) if cache else None
    if table is not None:
        return table, True
    start = time.perf_counter()
    table = read_image_folder(source) if source.is_dir() else read_fer_csv(source)
    seconds = time.perf_counter() - start
    where = save_cache(source, signature, table) if cache else None
    if where is not None and seconds > 1.0:  # worth telling: the next load will be quick
        print(f"emotion: parsed {source.name} in {seconds:.1f} s; cached at {where}",
              file=sys.stderr)
    return table, False


def _check_supported(source: Path) -> None:
    name = source.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".zip", ".tar")):
        raise UserError(f"{source} is an archive: extract it and pass the fer2013.csv inside "
                        "(or the folder holding it)")


def _more_bad_rows(others) -> str:
    """' There are 3 more bad rows (rows 17, 18, 40).' after the first bad row's message."""
    if not others:
        return ""
    count = "is 1 more bad row" if len(others) == 1 else f"are {len(others)} more bad rows"
    rows = [str(where) for where, _ in others if not isinstance(where, str)]  # CSV row numbers
    listed = ""
    if rows:
        listed = (" (row " if len(rows) == 1 else " (rows ") + ", ".join(rows[:5]) + (
            ", ..." if len(rows) > 5 else "") + ")"
    return f" There {count}{listed}."


def _skip_summary(source: Path, skipped) -> str:
    shown = "; ".join(f"{describe_where(w)} {reason}" for w, reason in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"emotion: skipped {len(skipped)} bad rows of {source.name}: {shown}{more}"


def _split(table: Table, val_fraction: float, seed: int,
           votes=None) -> tuple[dict, tuple[str, ...], dict, dict]:
    """({split name: (images, labels)}, the names of the splits drawn at random,
    {split name: each image's 1-based row in the source}, {split name: its rows of `votes`}
    (empty without votes))."""
    usage = table.usage.copy()
    drawn = ()
    unassigned = np.flatnonzero(usage == UNASSIGNED)
    if unassigned.size:  # two-column CSV: PublicTest and PrivateTest carved from everything
        public, private = stratified_split(table.labels[unassigned],
                                           [val_fraction, TEST_FRACTION], seed)
        usage[unassigned] = SPLITS.index("Training")
        usage[unassigned[public]] = SPLITS.index("PublicTest")
        usage[unassigned[private]] = SPLITS.index("PrivateTest")
        drawn = SPLITS
    elif table.layout == "folders" and not (usage == SPLITS.index("PublicTest")).any():
        training = np.flatnonzero(usage == SPLITS.index("Training"))
        (public,) = stratified_split(table.labels[training], [val_fraction], seed)
        usage[training[public]] = SPLITS.index("PublicTest")
        drawn = ("PublicTest",)

    splits, rows, split_votes = {}, {}, {}
    for code, name in enumerate(SPLITS):
        chosen = np.flatnonzero(usage == code)
        # float32 holding 0..255: what `preprocess` and the models take; uint8 stays in the cache
        images = table.images[chosen, None].astype(np.float32)
        splits[name] = (images, table.labels[chosen].astype(np.int64))
        rows[name] = table.rows[chosen].astype(np.int64)
        if votes is not None:
            split_votes[name] = votes[chosen]
    return splits, drawn, rows, split_votes


def stratified_split(labels, fractions, seed=0) -> list[np.ndarray]:
    """Random disjoint subsets holding `fractions` of each class: one index array per fraction.

    Splitting class by class keeps the class balance of every subset equal to the whole
    (a plain random split can leave the rare 'disgust' class nearly absent from a small test
    set). The indices are sorted, so each subset keeps the source's order.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = [[] for _ in fractions]
    for cls in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for i, fraction in enumerate(fractions):
            take = int(round(fraction * len(members)))
            picked[i].append(members[start : start + take])
            start += take
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in picked]
