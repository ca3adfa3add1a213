"""The .npz layout: `images`, `labels` and optionally `usage` arrays (see `save_npz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import NUM_CLASSES
from emotion.training.data.cache import write_atomically
from emotion.training.data.csv_file import usage_codes
from emotion.training.data.dataset import (FER2013, IMAGE_SIZE, SPLITS, UNASSIGNED, UNKNOWN_USAGE,
                                           Table)

def read_npz(source: Path) -> Table:
    """`images` (N, 48, 48) or (N, 1, 48, 48) with 0..255 values, `labels` (N,) and optional
    `usage` (N,) split names -> table. Checked as strictly as the CSV, but as a whole."""
    try:
        with np.load(source, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"{source}: not a readable .npz ({err})") from None
    if "images" not in arrays or "labels" not in arrays:
        raise UserError(f"{source}: a dataset .npz needs 'images' and 'labels' arrays, found "
                        f"{sorted(arrays)} (write one with emotion.training.data.save_npz)")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(labels) != len(images):
        raise UserError(f"{source}: expected images (N, 48, 48) and labels (N,), got "
                        f"{images.shape} and {labels.shape}")
    _check_images(images, source)
    _check_labels(labels, source)
    if "usage" in arrays:
        usage = usage_codes(arrays["usage"])
        if len(usage) != len(labels) or (usage == UNKNOWN_USAGE).any():
            raise UserError(f"{source}: usage must hold {', '.join(SPLITS)}")
    else:
        usage = np.full(len(labels), UNASSIGNED, np.int64)
    return Table(images=images.astype(np.uint8), labels=labels.astype(np.int64), usage=usage,
                  rows=np.arange(1, len(labels) + 1), n_rows=len(labels),
                  layout="npz", skipped=[])


def _check_images(images, source) -> None:
    """Gray levels 0..255 as integers, or floats that hold whole numbers in that range: a float
    array in [0, 1] (an image library's convention) would otherwise pass as nearly black faces,
    and a NaN would pass every range test."""
    what = f"{source}: array 'images'"
    if images.dtype.kind not in "uif":
        raise UserError(f"{what} has dtype {images.dtype}; expected uint8 gray levels 0..255")
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            bad = int(np.argwhere(~np.isfinite(images).reshape(len(images), -1).all(1))[0, 0])
            raise UserError(f"{what} holds NaN or infinite pixels (first in image {bad})")
        if images.size and images.max() <= 1.0:
            raise UserError(f"{what} holds floats in [0, 1]; expected gray levels 0..255 (multiply "
                            "by 255 and store them as uint8)")
        if (images != np.rint(images)).any():
            raise UserError(f"{what} holds fractional gray levels; expected whole numbers 0..255")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise UserError(f"{what}: values must lie in 0..255, found {images.min()} to "
                        f"{images.max()}")


def _check_labels(labels, source) -> None:
    what = f"{source}: array 'labels'"
    if labels.ndim != 1:
        raise UserError(f"{what} has shape {labels.shape}; expected one label per image (N,)")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.rint(labels)).any():
            raise UserError(f"{what} holds non-integer values; expected class indices "
                            f"0..{NUM_CLASSES - 1}")
    elif labels.dtype.kind not in "iu":
        raise UserError(f"{what} has dtype {labels.dtype}; expected integer class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{what}: labels must lie in 0..{NUM_CLASSES - 1}, found {labels.min()} "
                        f"to {labels.max()}")


def save_npz(dataset: FER2013, path) -> Path:
    """Write `dataset` as one compact .npz (uint8 images, labels, usage names) that
    `load_fer2013` reads back with the same splits."""
    names = np.repeat(list(dataset.splits), [len(y) for _, y in dataset.splits.values()])
    images = np.concatenate([x[:, 0] for x, _ in dataset.splits.values()])
    labels = np.concatenate([y for _, y in dataset.splits.values()])
    path = Path(path)
    write_atomically(path, {"images": np.clip(np.rint(images), 0, 255).astype(np.uint8),
                             "labels": labels.astype(np.int8), "usage": names.astype(str)})
    return path
