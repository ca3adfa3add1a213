"""The data set's type (`FER2013`: three splits of images and labels), its constants, class
counts and weights, and finding it on disk (`find_dataset`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.io.inputs import is_folder, readable_file, readable_folder
from emotion.labels import NUM_CLASSES

SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 2304 values per CSV row
TEST_FRACTION = 0.1  # share of each class that goes to PrivateTest when the CSV has no Usage
UNASSIGNED = -1  # usage code of rows that have no split yet (two-column CSV)
UNKNOWN_USAGE = -2  # usage code of a Usage value that is not a split name

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
DEFAULT_DATA_DIRS = (Path("data"), Path(__file__).resolve().parents[2] / "data")

HOW_TO_GET_FER2013 = (
    "Download fer2013.csv (Kaggle, 'Challenges in Representation Learning: Facial Expression "
    "Recognition') and put it at data/fer2013/fer2013.csv (.csv.gz works too), or pass "
    "--data PATH, or set EMOTION_DATA=PATH. PATH may be the CSV, a folder holding it, or an "
    "image folder with train/<emotion>/ and test/<emotion>/ subfolders."
)


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
    rows:            {split: (N,) int64} each image's 1-based data row in the source (its
                     position in the file list for folders): what lines up per-row labels
                     made from the same file, such as the landmark teacher's
    votes:           {split: (N, 7) float32} each image's FER+ vote distribution, when
                     loaded with ferplus_targets="votes" (empty otherwise)
    source_rows:     data rows in the source (what a per-row label file must hold)
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    source: Path
    layout: str
    skipped_rows: list[tuple[int | str, str]] = field(default_factory=list)
    ferplus: Path | None = None
    ferplus_dropped: int = 0
    from_cache: bool = False
    drawn_splits: tuple[str, ...] = ()
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    votes: dict[str, np.ndarray] = field(default_factory=dict)
    source_rows: int = 0

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
        if not is_folder(given):
            return readable_file(given, "data file")
        found = _find_in_folder(readable_folder(given, "data folder"))
        if found is None:
            raise UserError(f"no FER2013 data in {given} (from {origin}). {HOW_TO_GET_FER2013}")
        return _readable(found)

    for folder in dict.fromkeys(f.resolve() for f in DEFAULT_DATA_DIRS):
        found = _find_in_folder(folder) if folder.is_dir() else None
        if found is not None:
            return _readable(found)
    raise UserError(f"FER2013 not found in data/. {HOW_TO_GET_FER2013}")


def _readable(found: Path) -> Path:
    """A dataset file or image folder we may read (UserError naming it otherwise)."""
    return readable_file(found, "data file") if found.is_file() else readable_folder(found)


def _find_in_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / "fer2013"):
        for name in ("fer2013.csv", "fer2013.csv.gz", "fer2013.npz"):
            if (candidate / name).is_file():
                return candidate / name
        if candidate.is_dir() and find_subfolder(candidate, ("train", "training")) is not None:
            return candidate
    return None


def find_subfolder(root: Path, names) -> Path | None:
    """The subfolder of `root` whose name is one of `names`, ignoring case."""
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def describe_where(where) -> str:
    if isinstance(where, str):
        return where
    return f"row {where} (line {where + 1} of the file, the header being line 1)"


def shorten(text, limit: int = 60) -> str:
    """`text` cut to `limit` characters: a line of 2,304 pixel values read as a header or a
    label must not fill the screen with a 9 KB error message."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class Table:
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
