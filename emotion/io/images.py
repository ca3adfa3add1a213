"""Still images: reading them with clear errors, finding them in folders, and the pixel
formats the app works in (8-bit BGR to draw on, 8-bit gray to detect on).

OpenCV reports most failures by returning None rather than raising; `read_image` checks the
result at once and turns it into a `UserError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from emotion.errors import UserError
from emotion.io.inputs import is_folder, list_folder, readable_file

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm",
                    ".pbm", ".jp2", ".exr", ".hdr"}


# ---------------------------------------------------------------------------------------
# Pixel formats: everything the app draws on is 8-bit BGR, everything it detects on is
# 8-bit gray. Files and callers may give us gray, BGRA, 16-bit or float images.
# ---------------------------------------------------------------------------------------

def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a 16-bit or float image to uint8 (uint8 passes through untouched)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # Full 16-bit range -> 8 bits by dropping the low byte (65535 -> 255).
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        # Float images (EXR, HDR, or arrays from other code) are taken as [0, 1].
        return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any gray / BGR / BGRA image of any depth as 8-bit, 3-channel BGR."""
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def to_gray8(image: np.ndarray) -> np.ndarray:
    """Any gray / BGR / BGRA image of any depth as 8-bit gray (what the detectors want)."""
    image = to_uint8(image)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as it is stored (gray or colour, 8 or 16 bit); UserError if we can't.

    We decode from bytes with cv2.imdecode rather than cv2.imread: it reads non-ASCII paths
    on every OS, and a failure is ours to report instead of an OpenCV warning on stderr.
    ANYDEPTH keeps 16-bit data, ANYCOLOR keeps gray as gray, and unlike IMREAD_UNCHANGED both
    still apply the EXIF orientation of phone photos. (An alpha channel is dropped: faces
    are found on the colour channels alone.)
    """
    path = readable_file(path, "image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UserError(f"could not read image {path}: {err.strerror or err}") from None
    image = None
    if data.size:
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None or image.size == 0:
        raise UserError(f"could not read image {path}: empty, corrupt or not an image format "
                        f"OpenCV supports (jpg, png, bmp, tiff, webp, ...)")
    return image


def find_images(inputs: list[str]) -> list[Path]:
    """Expand folders (non-recursively, sorted) into their image files; keep files as given.

    A folder's *.annotated.png files are left out: they are `emotion predict --annotate`'s own
    copies, which a second run into the same folder would otherwise annotate again. Paths that
    do not exist are kept too, so the caller reports each of them by name.
    """
    paths: list[Path] = []
    for name in inputs:
        path = Path(name)
        if is_folder(path):
            found = sorted(p for p in list_folder(path)
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not p.name.endswith(".annotated.png"))
            if not found:
                raise UserError(f"no image files in folder {path} "
                                f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths
