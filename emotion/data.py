"""FER2013: find it, parse it (vectorized), check every row, cache the result.

Layouts understood (`load_fer2013(path)`):
    1. the Kaggle CSV `emotion,pixels,Usage` (plain or .gz)
    2. the two-column CSV `emotion,pixels` (no Usage): a seeded, stratified 80/10/10 split
       into Training / PublicTest / PrivateTest
    3. an image folder: ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/* (test becomes
       PrivateTest; PublicTest is ROOT/val or ROOT/validation if present, else a seeded
       stratified `val_fraction` of train)
    4. a `.npz` with `images` (N, 48, 48) uint8, `labels` (N,) and `usage` (N,) strings
       (the compact form of the CSV, e.g. for moving the data set to another machine)

Images come back as float32 (N, 1, 48, 48) with raw values 0..255 and labels as int64;
preprocessing is `emotion.preprocess`'s job.
"""

import gzip
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emotion.errors import UserError
from emotion.labels import EMOTIONS, NUM_CLASSES

SPLITS = ("Training", "PublicTest", "PrivateTest")
PIXELS = 48 * 48
CACHE_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}

# FER+ columns -> FER2013 class index (contempt, unknown and not-a-face have none).
FERPLUS_TO_FER = {"neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0,
                  "disgust": 1, "fear": 2}
FERPLUS_VOTES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                 "contempt", "unknown", "NF"]


@dataclass
class FER2013:
    splits: dict
    source: str
    skipped_rows: list = field(default_factory=list)  # (row number, reason)

    def split(self, name):
        if name not in self.splits:
            raise UserError(f"no split {name!r} in {self.source}; available: {', '.join(self.splits)}")
        return self.splits[name]


def find_dataset(path=None) -> Path:
    """--data PATH, else $EMOTION_DATA, else data/: a file, or a folder holding one."""
    candidates = [path, os.environ.get("EMOTION_DATA"), "data"]
    where = next(c for c in candidates if c)
    root = Path(where)
    if root.is_file():
        return root
    if root.is_dir():
        for name in ["fer2013.csv", "fer2013.csv.gz", "fer2013/fer2013.csv",
                     "fer2013/fer2013.csv.gz", "fer2013.npz"]:
            if (root / name).is_file():
                return root / name
        if (root / "train").is_dir():
            return root
        if (root / "fer2013" / "train").is_dir():
            return root / "fer2013"
    raise UserError(
        f"FER2013 not found at {root}. Download fer2013.csv (Kaggle 'Challenges in "
        "Representation Learning: Facial Expression Recognition') and put it at "
        "data/fer2013/fer2013.csv, or pass --data PATH, or set EMOTION_DATA."
    )


def load_fer2013(path=None, *, skip_bad_rows=False, ferplus=None, val_fraction=0.1, seed=0,
                 cache=True) -> FER2013:
    """Load FER2013 from any supported layout; see the module docstring."""
    source = find_dataset(path)
    if source.is_dir():
        images, labels, usage, skipped = _read_image_folder(source, val_fraction, seed)
    elif source.suffix == ".npz":
        with np.load(source, allow_pickle=False) as data:
            images, labels, usage = data["images"], data["labels"].astype(np.int64), data["usage"]
        skipped = []
    else:
        images, labels, usage, skipped = _read_csv_cached(source, skip_bad_rows, seed, cache)
    if ferplus:
        images, labels, usage = _apply_ferplus(images, labels, usage, Path(ferplus))
    splits = {}
    for name in SPLITS:
        mask = usage == name
        if mask.any():
            splits[name] = (images[mask][:, None].astype(np.float32), labels[mask])
    return FER2013(splits, str(source), skipped)


# -- CSV ---------------------------------------------------------------------------------------
def _cache_path(source: Path, key: str) -> Path:
    name = f"{source.name}.{key}.cache.npz"
    if os.access(source.parent, os.W_OK):
        return source.parent / name
    folder = Path(os.environ.get("EMOTION_CACHE", Path.home() / ".cache" / "emotion"))
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return folder / f"{digest}-{name}"


def _read_csv_cached(source: Path, skip_bad_rows, seed, cache):
    stat = source.stat()
    key = hashlib.sha1(f"{CACHE_VERSION}|{stat.st_size}|{stat.st_mtime_ns}|{skip_bad_rows}|{seed}"
                       .encode()).hexdigest()[:10]
    path = _cache_path(source, key)
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            skipped = [(int(r), str(m)) for r, m in zip(data["skipped_rows"], data["skipped_why"])]
            return data["images"], data["labels"], data["usage"], skipped
    images, labels, usage, skipped = parse_csv(source, skip_bad_rows, seed)
    if cache:
        for stale in path.parent.glob(f"*{source.name}.*.cache.npz"):
            stale.unlink(missing_ok=True)  # the source changed: older caches are invalid
        _atomic_savez(path, images=images, labels=labels, usage=usage,
                      skipped_rows=np.array([r for r, _ in skipped], np.int64),
                      skipped_why=np.array([m for _, m in skipped], dtype=str))
    return images, labels, usage, skipped


def _atomic_savez(path: Path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_csv(source, skip_bad_rows=False, seed=0):
    """(images uint8 (N, 48, 48), labels int64, usage str, skipped rows) from a FER2013 CSV.

    Row numbers in messages count data rows from 1 (the header is line 1 of the file, so
    row r is on line r + 1).
    """
    opener = gzip.open if str(source).endswith(".gz") else open
    try:
        with opener(source, "rt") as f:
            frame = pd.read_csv(f, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {source} as CSV: {err}") from None
    columns = [c.strip() for c in frame.columns]
    frame.columns = columns
    if "emotion" not in columns or "pixels" not in columns:
        raise UserError(f"{source}: expected columns emotion,pixels[,Usage], found {','.join(columns)}")
    n = len(frame)
    pixels = frame["pixels"].str.strip()
    problems = {}  # row index -> first problem found

    # Labels and Usage: vectorized checks.
    labels = pd.to_numeric(frame["emotion"].str.strip(), errors="coerce")
    for i in np.flatnonzero(~labels.isin(range(NUM_CLASSES)).to_numpy()):
        problems.setdefault(i, f"unknown emotion label {frame['emotion'].iat[i]!r} (expected 0..6)")
    has_usage = "Usage" in columns
    if has_usage:
        usage = frame["Usage"].str.strip().to_numpy()
        for i in np.flatnonzero(~np.isin(usage, SPLITS)):
            problems.setdefault(i, f"unknown Usage {usage[i]!r} (expected {', '.join(SPLITS)})")

    # Pixels: every field must be 2304 unsigned integers. A regex per row runs in C.
    well_formed = pixels.str.fullmatch(r"\d{1,3}(?: +\d{1,3})*").to_numpy(dtype=bool)
    counts = pixels.str.count(r" +").to_numpy() + 1
    for i in np.flatnonzero(~well_formed):
        bad = next((t for t in pixels.iat[i].split() if not t.isdigit()), None)
        problems.setdefault(i, f"non-numeric pixel value {bad!r}" if bad is not None
                            else "pixel values that are not integers 0..255")
    for i in np.flatnonzero(well_formed & (counts != PIXELS)):
        problems.setdefault(i, f"has {counts[i]} pixel values, expected {PIXELS}")
    good = np.array(sorted(set(range(n)) - set(problems)), dtype=np.int64) if problems else np.arange(n)

    # One C-level parse of all good rows at once.
    flat = np.array(" ".join(pixels.iloc[good]).split(), dtype=np.int64) if len(good) else \
        np.zeros(0, np.int64)
    values = flat.reshape(len(good), PIXELS)
    too_big = np.flatnonzero(values.max(axis=1, initial=0) > 255)
    for j in too_big:
        i = good[j]
        problems[i] = f"pixel value {values[j].max()} outside 0..255"
    if len(too_big):
        keep = np.ones(len(good), bool)
        keep[too_big] = False
        good, values = good[keep], values[keep]

    skipped = [(int(i) + 1, problems[i]) for i in sorted(problems)]
    if skipped and not skip_bad_rows:
        row, why = skipped[0]
        more = f" (and {len(skipped) - 1} more bad rows)" if len(skipped) > 1 else ""
        raise UserError(f"{source}: row {row} (line {row + 1} of the file) {why}{more}; "
                        "fix the file or pass --skip-bad-rows")
    if skipped:
        print(f"skipped {len(skipped)} bad rows of {source}: "
              + "; ".join(f"row {r}: {w}" for r, w in skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    labels = labels.to_numpy()[good].astype(np.int64)
    images = values.astype(np.uint8).reshape(-1, 48, 48)
    if has_usage:
        usage = usage[good]
    else:
        usage = stratified_split(labels, (0.8, 0.1, 0.1), seed)
    return images, labels, usage.astype(str), skipped


def stratified_split(labels, fractions, seed=0):
    """Usage names assigning each class's rows to the splits in `fractions` (seeded shuffle)."""
    rng = np.random.default_rng(seed)
    usage = np.empty(len(labels), dtype=object)
    for k in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == k))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(rows)).astype(int)
        for name, part in zip(SPLITS, np.split(rows, cuts)):
            usage[part] = name
    return usage.astype(str)


# -- image folders ----------------------------------------------------------------------------
def _read_folder(folder: Path):
    import cv2

    images, labels = [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = class_dir.name.lower()
        if name not in EMOTIONS:
            raise UserError(f"{class_dir}: unknown class folder; expected one of {', '.join(EMOTIONS)}")
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise UserError(f"cannot read image {file}")
            if image.shape != (48, 48):
                image = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA)
            images.append(image)
            labels.append(EMOTIONS.index(name))
    return np.array(images, np.uint8).reshape(-1, 48, 48), np.array(labels, np.int64)


def _read_image_folder(root: Path, val_fraction, seed):
    x_train, y_train = _read_folder(root / "train")
    usage_train = np.full(len(y_train), "Training", dtype=object)
    parts = [(x_train, y_train, usage_train)]
    val_dir = next((root / d for d in ("val", "validation") if (root / d).is_dir()), None)
    if val_dir is not None:
        x, y = _read_folder(val_dir)
        parts.append((x, y, np.full(len(y), "PublicTest", dtype=object)))
    else:
        split = stratified_split(y_train, (1 - val_fraction, val_fraction, 0.0), seed)
        usage_train[:] = np.where(split == "PublicTest", "PublicTest", "Training")
    if (root / "test").is_dir():
        x, y = _read_folder(root / "test")
        parts.append((x, y, np.full(len(y), "PrivateTest", dtype=object)))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    usage = np.concatenate([p[2] for p in parts]).astype(str)
    return images, labels, usage, []


# -- FER+ -------------------------------------------------------------------------------------
def _apply_ferplus(images, labels, usage, path: Path):
    """Replace labels by the FER+ majority vote; drop rows FER+ marks as not a face, and rows
    whose majority is contempt, unknown or not-a-face (FER2013 has no such class)."""
    if not path.is_file():
        raise UserError(f"FER+ labels not found: {path}")
    votes = pd.read_csv(path, keep_default_na=False)
    if len(votes) != len(labels):
        raise UserError(f"{path} has {len(votes)} rows but the dataset has {len(labels)}: FER+ "
                        "labels only fit the full, unfiltered fer2013.csv")
    counts = votes[FERPLUS_VOTES].to_numpy(dtype=np.float64)
    winner = np.array(FERPLUS_VOTES)[counts.argmax(axis=1)]
    is_face = votes["Image name"].astype(str).str.strip().to_numpy() != ""
    keep = is_face & np.isin(winner, list(FERPLUS_TO_FER)) & (counts.sum(axis=1) > 0)
    new_labels = np.array([FERPLUS_TO_FER.get(w, -1) for w in winner], np.int64)
    return images[keep], new_labels[keep], usage[keep]


def class_counts(labels) -> np.ndarray:
    return np.bincount(np.asarray(labels), minlength=NUM_CLASSES)


def class_weights(labels) -> np.ndarray:
    """Inverse class frequency, normalised to mean 1 (float32): rare classes weigh more."""
    counts = np.maximum(class_counts(labels), 1).astype(np.float64)
    weights = 1.0 / counts
    return (weights / weights.mean()).astype(np.float32)


