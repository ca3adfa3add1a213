"""FER2013: find it, parse it quickly, check every row, cache the result, split it.

Three layouts are understood (`load_fer2013` tells them apart by themselves):

1. The Kaggle CSV, header `emotion,pixels,Usage`, plain or gzip-compressed. `emotion` is the
   class index (see `emotion.labels.EMOTIONS`), `pixels` holds 48*48 = 2304 space-separated
   gray levels 0..255 in row-major order, `Usage` names the split: Training (28,709 rows),
   PublicTest (3,589; used for validation) or PrivateTest (3,589; the final test set).
2. The same CSV without the Usage column (`emotion,pixels`). The rows are then split per
   class with a seeded random generator: `TEST_FRACTION` (10%) goes to PrivateTest,
   `val_fraction` (10% by default) to PublicTest, the rest (80%) to Training.
3. An image folder, `ROOT/train/<class>/*.png|jpg` and `ROOT/test/<class>/*`, where each class
   folder is named after its emotion (case does not matter). `test` becomes PrivateTest.
   `ROOT/val/` (or `validation/`) becomes PublicTest when it exists; otherwise a seeded,
   per-class `val_fraction` of `train` is set aside as PublicTest.
4. A `.npz` holding `images` (N, 48, 48) uint8, `labels` (N,) and optionally `usage` (N,)
   split names: a compact copy, e.g. for moving the data set to another machine (see
   `save_npz`). Without `usage` it is split like the two-column CSV.

Every layout ends as the same `FER2013` object: three splits of (images, labels), the images
float32 (N, 1, 48, 48) holding the raw gray levels 0..255 (preprocessing is a separate step,
see `emotion.preprocess`) and the labels int64 (N,).

Why so much machinery for one CSV? The file is 300 MB of text holding 83 million numbers.
Converting them one by one in Python takes about 15 s on our 2-core machine; `_parse_pixels`
hands thousands of rows at a time to NumPy's C parser instead, so a full load (gunzip and
pandas included) takes about 5 s, and the result is cached as a compact .npz (83 MB) that
loads in under a second the next time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import EMOTIONS, NUM_CLASSES

SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 2304 values per CSV row
TEST_FRACTION = 0.1  # share of each class that goes to PrivateTest when the CSV has no Usage
UNASSIGNED = -1  # usage code of rows that have no split yet (two-column CSV)
UNKNOWN_USAGE = -2  # usage code of a Usage value that is not a split name
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

# Bump when the cache layout or the parsing rules change: old caches are then rebuilt.
CACHE_VERSION = 1
# Rows parsed per NumPy call: big enough that the per-call overhead vanishes, small enough
# that the temporaries (the joined text, 8 bytes per parsed value) stay around 100 MB.
CHUNK_ROWS = 4096

# FER+ (Barsoum et al. 2016) relabelled every FER2013 image by 10 annotators. Its CSV has one
# row per fer2013.csv row, in the same order, with these vote columns:
FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                 "contempt", "unknown", "NF")
# The FER2013 class of each vote column; -1 where FER2013 has no such class (contempt) or the
# vote is not an emotion at all (unknown, NF = "not a face"). Rows won by those are dropped.
FERPLUS_TO_FER2013 = np.array([6, 3, 5, 4, 0, 1, 2, -1, -1, -1])

# Where find_dataset looks when neither --data nor EMOTION_DATA is given: data/ under the
# working directory, then the project's own data/ folder (for runs from elsewhere).
DEFAULT_DATA_DIRS = (Path("data"), Path(__file__).resolve().parents[1] / "data")

HOW_TO_GET_FER2013 = (
    "Download fer2013.csv (Kaggle, 'Challenges in Representation Learning: Facial Expression "
    "Recognition') and put it at data/fer2013/fer2013.csv (.csv.gz works too), or pass "
    "--data PATH, or set EMOTION_DATA=PATH. PATH may be the CSV, a folder holding it, or an "
    "image folder with train/<emotion>/ and test/<emotion>/ subfolders."
)


# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------

@dataclass
class FER2013:
    """A loaded dataset.

    splits:          {"Training" | "PublicTest" | "PrivateTest": (images, labels)} with
                     images float32 (N, 1, 48, 48), raw gray levels 0..255, and labels int64 (N,)
    source:          the CSV file or image folder it came from
    layout:          "csv", "csv-no-usage", "folders" or "npz"
    skipped_rows:    [(where, reason)] of the rows left out by skip_bad_rows=True; `where` is
                     the 1-based data row number for a CSV (row 1 is the line after the header)
                     and the file path for an image folder
    ferplus:         the FER+ file whose labels replaced the originals, if any
    ferplus_dropped: rows dropped because FER+ gives them no FER2013 class
    from_cache:      True when the parsed arrays came from the cache instead of the source
    drawn_splits:    the splits that the source did not name but were drawn at random
                     (seeded, per class): all three for a CSV or .npz without Usage,
                     PublicTest for an image folder without val/
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    source: Path
    layout: str
    skipped_rows: list[tuple[int | str, str]] = field(default_factory=list)
    ferplus: Path | None = None
    ferplus_dropped: int = 0
    from_cache: bool = False
    drawn_splits: tuple[str, ...] = ()

    def split(self, name: str, *, required: bool = False,
              hint: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(images (N, 1, 48, 48) float32, labels (N,) int64) of one split.

        required=True makes an empty split a UserError naming the splits the source does have
        (followed by `hint`, advice for the caller's situation), instead of arrays of length 0
        that would only fail later, somewhere less clear.
        """
        if name not in self.splits:
            raise UserError(f"unknown split {name!r}: {self.source.name} has "
                            f"{', '.join(self.splits)}")
        images, labels = self.splits[name]
        if required and len(labels) == 0:
            present = ", ".join(f"{split} {len(y)}" for split, (_, y) in self.splits.items()
                                if len(y))
            has = f"it has: {present}" if present else "it has no usable rows at all"
            raise UserError(f"{self.source} has no {name} rows ({has}). {hint}".rstrip())
        return images, labels

    def summary(self) -> str:
        sizes = ", ".join(f"{name} {len(labels)}" for name, (_, labels) in self.splits.items())
        return f"{self.source} ({self.layout}): {sizes}"


def class_counts(labels) -> np.ndarray:
    """Number of examples of each class: int64 (NUM_CLASSES,)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}")
    return np.bincount(labels.astype(np.int64).ravel(), minlength=NUM_CLASSES)


def class_weights(labels) -> np.ndarray:
    """Inverse class frequencies scaled to mean 1: float32 (NUM_CLASSES,).

    Weighting the loss by these makes every class count as much as any other in total (FER2013
    has 16x more 'happy' than 'disgust'). Scaling to mean 1 keeps the loss, and so the useful
    learning rate, on the scale of the unweighted loss. A class absent from `labels` gets
    weight 0 (it never reaches the loss) and the mean is taken over the classes present.
    """
    counts = class_counts(labels).astype(np.float64)
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    weights[present] = 1.0 / counts[present]
    if present.any():
        weights *= present.sum() / weights.sum()
    return weights.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Finding the data
# ---------------------------------------------------------------------------------------

def find_dataset(path=None) -> Path:
    """The FER2013 source to read: `path` (the --data argument), else $EMOTION_DATA, else data/.

    A file is taken as it is. In a folder we look for fer2013.csv, fer2013.csv.gz,
    fer2013.npz, an image-folder layout (train/ and test/), then the same inside a fer2013/
    subfolder.
    """
    if path is not None:
        given, origin = Path(path).expanduser(), "--data"
    elif os.environ.get("EMOTION_DATA"):
        given, origin = Path(os.environ["EMOTION_DATA"]).expanduser(), "EMOTION_DATA"
    else:
        given, origin = None, None

    if given is not None:
        if not given.exists():
            raise UserError(f"{origin} path {given} does not exist. {HOW_TO_GET_FER2013}")
        found = given if given.is_file() else _find_in_folder(given)
        if found is None:
            raise UserError(f"no FER2013 data in {given} (from {origin}). {HOW_TO_GET_FER2013}")
        return found

    for folder in dict.fromkeys(f.resolve() for f in DEFAULT_DATA_DIRS):
        found = _find_in_folder(folder) if folder.is_dir() else None
        if found is not None:
            return found
    raise UserError(f"FER2013 not found in data/. {HOW_TO_GET_FER2013}")


def _find_in_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / "fer2013"):
        for name in ("fer2013.csv", "fer2013.csv.gz", "fer2013.npz"):
            if (candidate / name).is_file():
                return candidate / name
        if candidate.is_dir() and _subfolder(candidate, ("train", "training")) is not None:
            return candidate
    return None


def _subfolder(root: Path, names) -> Path | None:
    """The subfolder of `root` whose name is one of `names`, ignoring case."""
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

def load_fer2013(path=None, *, skip_bad_rows=False, ferplus=None, val_fraction=0.1, seed=0,
                 cache=True) -> FER2013:
    """Load FER2013 from a CSV (any of the layouts in the module docstring) or an image folder.

    path:          file or folder; None looks in $EMOTION_DATA, then data/ (see find_dataset)
    skip_bad_rows: leave out malformed rows (wrong pixel count, non-numeric or out-of-range
                   pixels, unknown label or Usage, unreadable images) and list them in
                   `skipped_rows`, instead of stopping at the first with a UserError
    ferplus:       a FER+ fer2013new.csv(.gz) whose majority vote replaces the labels
                   (see `ferplus_labels`); only for the CSV layouts, whose rows it matches
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
        table, from_cache = _read_npz(source), False
    else:
        table, from_cache = _parse_with_cache(source, cache)

    if table.skipped:
        if not skip_bad_rows:
            # Worded for the command line, the common case; in Python the same switch is the
            # skip_bad_rows argument, which a reader of this signature finds at once.
            raise UserError(f"{source}: {_describe_where(table.skipped[0][0])} "
                            f"{table.skipped[0][1]}.{_more_bad_rows(table.skipped[1:])} "
                            "Fix the file, or leave the bad rows out with --skip-bad-rows.")
        print(_skip_summary(source, table.skipped), file=sys.stderr)

    dropped = 0
    if ferplus is not None:
        ferplus = _find_ferplus(Path(ferplus).expanduser())
        table, dropped = _apply_ferplus(table, source, ferplus)

    splits, drawn = _split(table, val_fraction, seed)
    return FER2013(splits=splits, source=source, layout=table.layout,
                   skipped_rows=list(table.skipped), ferplus=ferplus, ferplus_dropped=dropped,
                   from_cache=from_cache, drawn_splits=drawn)


def _parse_with_cache(source: Path, cache: bool) -> tuple[_Table, bool]:
    """(parsed table, whether it came from the cache) for a CSV file or an image folder."""
    signature = _signature(source)
    table = _load_cache(source, signature) if cache else None
    if table is not None:
        return table, True
    start = time.perf_counter()
    table = _read_image_folder(source) if source.is_dir() else _read_csv(source)
    seconds = time.perf_counter() - start
    where = _save_cache(source, signature, table) if cache else None
    if where is not None and seconds > 1.0:  # worth telling: the next load will be quick
        print(f"emotion: parsed {source.name} in {seconds:.1f} s; cached at {where}",
              file=sys.stderr)
    return table, False


def _check_supported(source: Path) -> None:
    name = source.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".zip", ".tar")):
        raise UserError(f"{source} is an archive: extract it and pass the fer2013.csv inside "
                        "(or the folder holding it)")


def _describe_where(where) -> str:
    if isinstance(where, str):
        return where
    return f"row {where} (line {where + 1} of the file, the header being line 1)"


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


def _shorten(text, limit: int = 60) -> str:
    """`text` cut to `limit` characters: a line of 2,304 pixel values read as a header or a
    label must not fill the screen with a 9 KB error message."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _skip_summary(source: Path, skipped) -> str:
    shown = "; ".join(f"{_describe_where(w)} {reason}" for w, reason in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"emotion: skipped {len(skipped)} bad rows of {source.name}: {shown}{more}"


@dataclass
class _Table:
    """What parsing a source gives, before FER+ relabelling and splitting (this is cached).

    images (N, 48, 48) uint8, labels (N,) int64, usage (N,) int64 index into SPLITS or
    UNASSIGNED, rows (N,) int64: each image's 1-based data row in the CSV (its position
    in the file list for folders), n_rows: data rows in the source, skipped: [(where, reason)].
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    rows: np.ndarray
    n_rows: int
    layout: str
    skipped: list


def _split(table: _Table, val_fraction: float, seed: int) -> tuple[dict, tuple[str, ...]]:
    """({split name: (images, labels)}, the names of the splits drawn at random)."""
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

    splits = {}
    for code, name in enumerate(SPLITS):
        chosen = np.flatnonzero(usage == code)
        # float32 holding 0..255: what `preprocess` and the models take; uint8 stays in the cache
        images = table.images[chosen, None].astype(np.float32)
        splits[name] = (images, table.labels[chosen].astype(np.int64))
    return splits, drawn


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


# ---------------------------------------------------------------------------------------
# The CSV layouts
# ---------------------------------------------------------------------------------------

def _read_csv(source: Path) -> _Table:
    import pandas as pd

    data = source.read_bytes()
    if data[:2] == b"\x1f\x8b":  # the gzip magic number: trust the content, not the name
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise UserError(f"{source}: damaged gzip file ({err})") from None
    try:
        # Everything as text: labels and Usage are checked below with exact messages. Blank
        # lines are kept as empty rows so that row numbers match the file's line numbers.
        # pandas only warns when the first rows have more fields than the header (and drops
        # the extra ones): we make that an error too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                                skip_blank_lines=False, index_col=False,
                                encoding_errors="replace")
    except pd.errors.EmptyDataError:
        raise UserError(f"{source} is empty; expected the header emotion,pixels,Usage") from None
    except pd.errors.ParserError as err:
        raise UserError(f"{source}: not a valid CSV: {err}") from None
    except pd.errors.ParserWarning:
        raise UserError(f"{source}: not a valid CSV: {_first_long_line(data)}") from None
    del data

    columns = {name.strip().lower(): name for name in frame.columns}
    if "emotion" not in columns or "pixels" not in columns:
        found = ",".join(map(str, frame.columns))
        # A first line that starts with a class number is a data row: the header is missing.
        advice = (" (that is a data row: add the header line emotion,pixels,Usage at the top)"
                  if str(frame.columns[0]).strip().isdigit() else "")
        raise UserError(f"{source}: expected the header emotion,pixels,Usage (or emotion,pixels),"
                        f" found {_shorten(found)!r}{advice}")
    has_usage = "usage" in columns
    emotion = frame[columns["emotion"]].str.strip()
    pixels = frame[columns["pixels"]].to_numpy(dtype=object)
    usage_text = frame[columns["usage"]].str.strip() if has_usage else None
    blank = ((frame == "").all(axis=1)).to_numpy()  # an empty line: nothing to report

    label_number = pd.to_numeric(emotion, errors="coerce").to_numpy(dtype=np.float64)
    label_ok = np.isin(label_number, np.arange(NUM_CLASSES))  # NaN, 2.5 or 9 -> False
    if has_usage:
        usage = _usage_codes(usage_text)
        usage_ok = usage != UNKNOWN_USAGE
    else:
        usage = np.full(len(frame), UNASSIGNED, np.int64)
        usage_ok = np.ones(len(frame), bool)
    images, pixel_problems = _parse_pixels(pixels)

    # The slow, exact description is built only for the rows that failed a vectorized check.
    pixel_bad = np.zeros(len(frame), bool)
    pixel_bad[list(pixel_problems)] = True
    bad = ~blank & (~label_ok | pixel_bad | ~usage_ok)
    skipped = []
    for i in np.flatnonzero(bad):
        reasons = []
        if not label_ok[i]:
            reasons.append(_label_problem(emotion.iloc[i]))
        if pixel_bad[i]:
            reasons.append(pixel_problems[i])
        if not usage_ok[i]:
            reasons.append(_usage_problem(usage_text.iloc[i]))
        skipped.append((int(i) + 1, "; ".join(reasons)))

    keep = ~blank & ~bad
    return _Table(images=images[keep].reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
                  labels=label_number[keep].astype(np.int64), usage=usage[keep],
                  rows=np.flatnonzero(keep) + 1, n_rows=len(frame),
                  layout="csv" if has_usage else "csv-no-usage", skipped=skipped)


def _first_long_line(data: bytes) -> str:
    """Which line has more fields than the header (only called once we know one does)."""
    lines = data.split(b"\n")
    expected = lines[0].count(b",") + 1
    for number, line in enumerate(lines[1:], start=2):
        if line.count(b",") + 1 > expected:
            return f"line {number} has {line.count(b',') + 1} fields, the header has {expected}"
    return "a row has more fields than the header"


def _usage_codes(names) -> np.ndarray:
    """Split names (N,) -> int64 (N,) index into SPLITS, UNKNOWN_USAGE for anything else."""
    names = np.asarray(names, dtype=str)
    codes = np.full(len(names), UNKNOWN_USAGE, np.int64)
    for code, name in enumerate(SPLITS):
        codes[names == name] = code
    return codes


def _label_problem(text: str) -> str:
    if text == "":
        return "has no emotion label"
    try:
        float(text)
    except ValueError:
        return f"has a non-numeric emotion label {_shorten(text)!r}"
    return f"has an unknown emotion label {_shorten(text)} (expected 0..{NUM_CLASSES - 1})"


def _usage_problem(text: str) -> str:
    if text == "":
        return "has no Usage"
    return f"has an unknown Usage {_shorten(text)!r} (expected {', '.join(SPLITS)})"


def _parse_pixels(texts: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Pixel strings (N,) -> (uint8 (N, 2304), {row index: problem}) without a per-row loop.

    Rows are parsed CHUNK_ROWS at a time by `_parse_rows`, all at once in C. Only when a chunk
    holds a malformed row (normally never) is it halved, and halved again, until the bad rows
    stand alone: about 2 * log2(CHUNK_ROWS) extra parses per bad row, and only those single
    rows go through `_check_row`, which finds the exact problem in plain Python.
    """
    images = np.zeros((len(texts), PIXELS), np.uint8)
    problems = {}

    def parse(lo, hi):
        values = _parse_rows(texts[lo:hi])
        if values is not None:
            images[lo:hi] = values
        elif hi - lo > 1:
            mid = (lo + hi) // 2
            parse(lo, mid)
            parse(mid, hi)
        else:
            problems[lo] = _check_row(texts[lo])

    for start in range(0, len(texts), CHUNK_ROWS):
        parse(start, min(start + CHUNK_ROWS, len(texts)))
    return images, problems


def _parse_rows(texts) -> np.ndarray | None:
    """uint8 (n, 2304) if every row holds exactly 2304 integers in 0..255, else None.

    We join the rows with a marker value, -1, after each one, and let NumPy's C parser read
    all the numbers in one call (sep=" " takes any run of whitespace as a separator). Every
    row had exactly 2304 numbers if and only if the markers sit at every 2305th value, and
    then the other values must lie in 0..255. Anything that is not a number stops the parser
    early (a ValueError, or a short result). int64, because smaller types wrap around
    silently: int16 reads "65600" as 64.
    """
    try:
        values = np.fromstring(" -1 ".join(texts) + " -1", dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if values.size != len(texts) * (PIXELS + 1):
        return None
    values = values.reshape(len(texts), PIXELS + 1)
    pixels = values[:, :PIXELS]
    if (values[:, PIXELS] != -1).any() or pixels.min() < 0 or pixels.max() > 255:
        return None
    return pixels.astype(np.uint8)


def _check_row(text: str) -> str:
    """What is wrong with a pixel string that `_parse_rows` refused, in words."""
    tokens = text.split()
    if len(tokens) != PIXELS:
        return f"has {len(tokens)} pixel values, expected {PIXELS}"
    for token in tokens:
        if not re.fullmatch(r"[+-]?[0-9]+", token):
            return f"has a non-numeric pixel value {token!r}"
        if not 0 <= int(token) <= 255:
            return f"has pixel value {int(token)} outside 0..255"
    return "could not be parsed"  # not reached: a row passing the checks above parses


# ---------------------------------------------------------------------------------------
# The image-folder layout
# ---------------------------------------------------------------------------------------

def _list_image_folder(root: Path) -> list[tuple[Path, int, int]]:
    """[(image file, label, usage code)] in a fixed order; UserError for an unknown class."""
    parts = [("Training", ("train", "training")), ("PublicTest", ("val", "validation")),
             ("PrivateTest", ("test", "testing"))]
    folders = {split: _subfolder(root, names) for split, names in parts}
    missing = [names[0] for split, names in parts if split != "PublicTest" and not folders[split]]
    if missing:
        raise UserError(f"{root}: an image-folder dataset needs {' and '.join(missing)}/ "
                        f"subfolders (train/<emotion>/*.png, test/<emotion>/*.png)")
    classes = {name: index for index, name in enumerate(EMOTIONS)}
    listing = []
    for split, _ in parts:
        if folders[split] is None:
            continue
        for class_folder in sorted(p for p in folders[split].iterdir()
                                   if p.is_dir() and not p.name.startswith(".")):
            label = classes.get(class_folder.name.lower())
            if label is None:
                raise UserError(f"{class_folder}: unknown class folder; the class folders must "
                                f"be named {', '.join(EMOTIONS)}")
            for file in sorted(class_folder.iterdir()):
                if file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith("."):
                    listing.append((file, label, SPLITS.index(split)))
    if not listing:
        raise UserError(f"{root}: no images found under train/ and test/")
    return listing


def _read_image_folder(root: Path) -> _Table:
    import cv2

    from emotion.preprocess import resize_face

    listing = _list_image_folder(root)
    images = np.zeros((len(listing), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    keep = np.ones(len(listing), bool)
    skipped = []
    for i, (file, _, _) in enumerate(listing):
        # imdecode of the bytes, not imread: it reads non-ASCII paths on every OS
        raw = np.fromfile(file, np.uint8)
        image = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
        if image is None:
            keep[i] = False
            skipped.append((str(file), "cannot be read as an image"))
        else:
            images[i] = resize_face(image)  # the same resize as the live pipeline's crops
    labels = np.array([label for _, label, _ in listing], np.int64)
    usage = np.array([code for _, _, code in listing], np.int64)
    return _Table(images=images[keep], labels=labels[keep], usage=usage[keep],
                  rows=np.flatnonzero(keep) + 1, n_rows=len(listing), layout="folders",
                  skipped=skipped)


# ---------------------------------------------------------------------------------------
# The .npz layout
# ---------------------------------------------------------------------------------------

def _read_npz(source: Path) -> _Table:
    """`images` (N, 48, 48) or (N, 1, 48, 48) with 0..255 values, `labels` (N,) and optional
    `usage` (N,) split names -> table. Checked as strictly as the CSV, but as a whole."""
    try:
        with np.load(source, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"{source}: not a readable .npz ({err})") from None
    if "images" not in arrays or "labels" not in arrays:
        raise UserError(f"{source}: a dataset .npz needs 'images' and 'labels' arrays, found "
                        f"{sorted(arrays)} (write one with emotion.data.save_npz)")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(labels) != len(images):
        raise UserError(f"{source}: expected images (N, 48, 48) and labels (N,), got "
                        f"{images.shape} and {labels.shape}")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise UserError(f"{source}: image values must lie in 0..255")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{source}: labels must lie in 0..{NUM_CLASSES - 1}")
    if "usage" in arrays:
        usage = _usage_codes(arrays["usage"])
        if len(usage) != len(labels) or (usage == UNKNOWN_USAGE).any():
            raise UserError(f"{source}: usage must hold {', '.join(SPLITS)}")
    else:
        usage = np.full(len(labels), UNASSIGNED, np.int64)
    return _Table(images=images.astype(np.uint8), labels=labels.astype(np.int64), usage=usage,
                  rows=np.arange(1, len(labels) + 1), n_rows=len(labels),
                  layout="npz", skipped=[])


def save_npz(dataset: FER2013, path) -> Path:
    """Write `dataset` as one compact .npz (uint8 images, labels, usage names) that
    `load_fer2013` reads back with the same splits."""
    names = np.repeat(list(dataset.splits), [len(y) for _, y in dataset.splits.values()])
    images = np.concatenate([x[:, 0] for x, _ in dataset.splits.values()])
    labels = np.concatenate([y for _, y in dataset.splits.values()])
    path = Path(path)
    _write_atomically(path, {"images": np.clip(np.rint(images), 0, 255).astype(np.uint8),
                             "labels": labels.astype(np.int8), "usage": names.astype(str)})
    return path


# ---------------------------------------------------------------------------------------
# FER+ labels
# ---------------------------------------------------------------------------------------

def _find_ferplus(path: Path) -> Path:
    if path.is_dir():
        for name in ("fer2013new.csv", "fer2013new.csv.gz"):
            if (path / name).is_file():
                return path / name
    if not path.is_file():
        raise UserError(f"FER+ labels not found at {path}: pass the fer2013new.csv(.gz) file "
                        "from github.com/microsoft/FERPlus (or the folder holding it)")
    return path.resolve()


def ferplus_labels(path) -> tuple[np.ndarray, np.ndarray]:
    """FER+ majority labels mapped to FER2013 classes: (labels (M,) int64, usage (M,) int64).

    Each row's label is the column with the most votes among the 10 FER+ columns. FER+ columns
    neutral, happiness, surprise, sadness, anger, disgust, fear map to FER2013 classes
    6, 3, 5, 4, 0, 1, 2. The label is -1 (the row is to be dropped) when the winner is
    contempt (no FER2013 class), unknown or NF (not a face), when two columns tie for the
    most votes (no majority), or when FER+ left the image name blank (not a face).
    `usage` is the row's split as an index into SPLITS (UNKNOWN_USAGE if it is none).
    """
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
        raise UserError(f"{path}: {_describe_where(row)} has a vote count that is not a "
                        "non-negative number")

    winner = votes.argmax(axis=1)
    top = votes.max(axis=1)
    tie = (votes == top[:, None]).sum(axis=1) > 1
    not_a_face = frame["Image name"].str.strip().to_numpy() == ""
    labels = FERPLUS_TO_FER2013[winner]
    labels[tie | not_a_face | (top == 0)] = -1
    return labels, _usage_codes(frame["Usage"].str.strip())


def _apply_ferplus(table: _Table, source: Path, ferplus: Path) -> tuple[_Table, int]:
    """The table with FER+ labels, minus the rows FER+ gives no FER2013 class; (table, dropped)."""
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
                            f"{_describe_where(row)} has a different Usage in the two files")
        new_usage = table.usage
    else:
        new_usage = usage[at]  # no Usage in the source: FER+ supplies the standard split
    new_labels = labels[at]
    keep = new_labels >= 0
    relabelled = _Table(images=table.images[keep], labels=new_labels[keep],
                        usage=new_usage[keep], rows=table.rows[keep], n_rows=table.n_rows,
                        layout=table.layout, skipped=table.skipped)
    return relabelled, int((~keep).sum())


# ---------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where caches go when the source's own folder is read-only: $EMOTION_CACHE or
    ~/.cache/emotion."""
    return Path(os.environ.get("EMOTION_CACHE") or Path.home() / ".cache" / "emotion")


def _cache_paths(source: Path) -> list[Path]:
    """[next to the source, in cache_dir()]: where a cache is looked for, in this order."""
    beside = source / ".emotion-cache.npz" if source.is_dir() else source.with_name(
        source.name + ".cache.npz")
    key = hashlib.sha256(str(source).encode()).hexdigest()[:16]  # one per absolute path
    return [beside, cache_dir() / f"{source.name}-{key}.cache.npz"]


def _signature(source: Path) -> dict:
    """What must not change for a cache to stay valid: format version, path, size and mtime
    (for a folder: a digest of every image file's name, size and mtime)."""
    if source.is_file():
        stat = source.stat()
        return {"version": CACHE_VERSION, "source": str(source), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns}
    digest = hashlib.sha256()
    for file, label, usage in _list_image_folder(source):
        stat = file.stat()
        digest.update(f"{file.relative_to(source)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {"version": CACHE_VERSION, "source": str(source), "files": digest.hexdigest()}


def _load_cache(source: Path, signature: dict) -> _Table | None:
    for path in _cache_paths(source):
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                if meta.get("signature") != signature:
                    continue  # stale: the source changed (or another version wrote it)
                where = stored["skipped_where"].tolist()
                skipped = list(zip(where if meta["layout"] == "folders" else map(int, where),
                                   stored["skipped_reason"].tolist()))
                return _Table(images=stored["images"], labels=stored["labels"].astype(np.int64),
                              usage=stored["usage"].astype(np.int64),
                              rows=stored["rows"].astype(np.int64), n_rows=meta["n_rows"],
                              layout=meta["layout"], skipped=skipped)
        except (OSError, ValueError, KeyError, EOFError) as err:  # damaged: rebuild it
            print(f"emotion: ignoring unreadable cache {path} ({err})", file=sys.stderr)
    return None


def _save_cache(source: Path, signature: dict, table: _Table) -> Path | None:
    """Write the table next to the source if that folder is writable, else in cache_dir().

    Bad rows are cached too (with their reasons), so one cache serves both skip_bad_rows
    settings: a strict load raises the same error from the cache as from the source.
    """
    meta = {"signature": signature, "layout": table.layout, "n_rows": table.n_rows}
    arrays = {
        "images": table.images.astype(np.uint8),  # 1 byte per pixel: 83 MB for all of FER2013
        "labels": table.labels.astype(np.int8),
        "usage": table.usage.astype(np.int8),
        "rows": table.rows.astype(np.int32),
        "skipped_where": np.array([str(w) for w, _ in table.skipped], dtype=str),
        "skipped_reason": np.array([r for _, r in table.skipped], dtype=str),
        "meta": np.array(json.dumps(meta)),
    }
    beside, elsewhere = _cache_paths(source)
    targets = [beside, elsewhere] if _is_writable_dir(beside.parent) else [elsewhere]
    for path in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, arrays)
            return path
        except OSError:
            continue
    print(f"emotion: could not write a cache for {source} (tried {', '.join(map(str, targets))});"
          " the next load will parse it again", file=sys.stderr)
    return None


def _is_writable_dir(folder: Path) -> bool:
    # os.access says yes to root everywhere, so also respect the folder's own permission bits:
    # a dataset folder marked read-only (like a shared copy) is left untouched even then.
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def _write_atomically(path: Path, arrays: dict) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`: a reader
    (or a crash half-way) never sees a half-written cache."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a cache is for every user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
