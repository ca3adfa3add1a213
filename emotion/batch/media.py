"""What `emotion batch` works on: the files its inputs name, each with a kind and a key.

    find_media(["archive/", "a.jpg"])  -> [MediaFile]: files as given, folders searched
                                          recursively for images and videos, in sorted order

A MediaFile's `key` (a hash of its resolved path, size and modification time) names its part
file (emotion/batch/part_store.py): a file done once is recognised on `--resume`, and a file that
was replaced or edited since (another size or mtime) is done again rather than skipped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from emotion.errors import UserError
from emotion.io.images import IMAGE_EXTENSIONS
from emotion.video.sources import READABLE_VIDEO_EXTENSIONS, is_url


@dataclass(frozen=True)
class MediaFile:
    name: str  # as the user named it (or found it in a folder): the table's `file` column
    path: str  # resolved, absolute: what a worker opens, wherever its working folder is
    kind: str  # "image", "video", or "other" (a named file of neither kind: an error row)
    key: str   # see the module docstring


def media_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in READABLE_VIDEO_EXTENSIONS:
        return "video"
    return "other"


def file_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _found_in(folder: Path) -> list[Path]:
    """A folder's images and videos, in all its subfolders, sorted. `emotion predict
    --annotate`'s own copies (*.annotated.png) are left out, as emotion.io.images.find_images
    does; so are hidden files and folders."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if (not name.startswith(".") and not name.endswith(".annotated.png")
                    and media_kind(path) != "other"):
                found.append(path)
    return found


def find_media(inputs: list[str]) -> list[MediaFile]:
    """The files to analyse, each once (a file named twice, or named and inside a named
    folder, is kept where it first appears). UserError, before any work, for an input that
    does not exist or when nothing is left to do: a typo costs nothing."""
    paths: list[Path] = []
    for name in inputs:
        if is_url(name):  # as a Path, "http://host/x.jpg" would read "http:/host/x.jpg"
            raise UserError(f"{name} is a URL: emotion batch reads files and folders; "
                            "download it first (e.g. curl -O URL)")
        path = Path(name)
        if path.is_dir():
            found = _found_in(path)
            if not found:
                known = sorted(IMAGE_EXTENSIONS | READABLE_VIDEO_EXTENSIONS)
                raise UserError(f"no image or video files in folder {path} (looked for "
                                f"{', '.join(known)})")
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            raise UserError(f"input not found: {path}")
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(path.resolve(), path)
    return [MediaFile(name=str(path), path=str(resolved), kind=media_kind(path),
                      key=file_key(path)) for resolved, path in unique.items()]
