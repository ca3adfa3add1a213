"""The image-folder layout: ROOT/train/<emotion>/*, ROOT/test/<emotion>/*, optionally ROOT/val/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import EMOTIONS
from emotion.training.data.dataset import IMAGE_SIZE, SPLITS, Table, find_subfolder
from emotion.io.images import IMAGE_EXTENSIONS

def list_image_folder(root: Path) -> list[tuple[Path, int, int]]:
    """[(image file, label, usage code)] in a fixed order; UserError for an unknown class."""
    parts = [("Training", ("train", "training")), ("PublicTest", ("val", "validation")),
             ("PrivateTest", ("test", "testing"))]
    folders = {split: find_subfolder(root, names) for split, names in parts}
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


def read_image_folder(root: Path) -> Table:
    import cv2

    from emotion.cnn.preprocess import resize_face

    listing = list_image_folder(root)
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
    return Table(images=images[keep], labels=labels[keep], usage=usage[keep],
                  rows=np.flatnonzero(keep) + 1, n_rows=len(listing), layout="folders",
                  skipped=skipped)
