"""Where data comes from: every input file and folder is checked once, here, before it is read,
so that a missing, unreadable or odd path is one line naming it, never a traceback or a hang.

This is the input side of emotion/io/outputs.py. The checks look before they read because the
libraries that read for us report badly: OpenCV says "not a video format it can decode" for
a video it may not open, NumPy and pandas raise PermissionError, and reading a named pipe
blocks until someone writes to it.

(`os.access` answers yes to root for every file, so as root a permission problem still
surfaces at the read itself: `emotion.cli` turns that PermissionError into the same line.)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from emotion.errors import UserError


def _stat(path: Path, what: str) -> os.stat_result | None:
    """The file's status, None when it does not exist; UserError when it may not be looked at
    (a folder on the way that we may not enter)."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise UserError(f"{what} not found: {path} (a file stands where a folder should be)")
    except PermissionError:
        raise UserError(f"cannot open {what} {path}: permission denied (on a folder on its "
                        "way)") from None


def readable_file(path: str | os.PathLike, what: str = "file", regular: bool = True) -> Path:
    """`path` as a Path, if it is a regular file we may read; UserError naming it otherwise.

    `what` names the kind of input in the message ("image", "video", "data file").
    `regular=False` also accepts named pipes and devices: a video may be a stream
    (/dev/video0, or a pipe that ffmpeg writes into), which is read as it comes.
    """
    path = Path(path)
    status = _stat(path, what)
    if status is None:
        raise UserError(f"{what} not found: {path}")
    if stat.S_ISDIR(status.st_mode):
        raise UserError(f"{path} is a folder, not a{'n' if what[0] in 'aeiou' else ''} {what}")
    if regular and not stat.S_ISREG(status.st_mode):
        # A named pipe, socket or device: reading it may block forever or never end.
        raise UserError(f"{path} is not a regular file (a named pipe, socket or device?): "
                        f"give the {what} as a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read {what} {path}: permission denied")
    return path


def readable_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """`path` as a Path, if it is a folder whose entries we may list."""
    path = Path(path)
    status = _stat(path, what)
    if status is None:
        raise UserError(f"{what} not found: {path}")
    if not stat.S_ISDIR(status.st_mode):
        raise UserError(f"{path} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"cannot list {what} {path}: permission denied")
    return path


def list_folder(path: Path, what: str = "folder") -> list[Path]:
    """The entries of a folder, sorted; a folder we may not list is a UserError."""
    readable_folder(path, what)
    try:
        return sorted(path.iterdir())
    except PermissionError:
        raise UserError(f"cannot list {what} {path}: permission denied") from None


def is_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder, without the PermissionError Path.is_dir raises on a path
    under a folder we may not enter (that path is then reported by the reader)."""
    try:
        return stat.S_ISDIR(Path(path).stat().st_mode)
    except OSError:
        return False
