"""Where results go: every output path is checked before any work is done, so that a bad
path costs nothing (not a whole evaluation or video) and nothing is overwritten by accident
(an input video, another output of the same run).

Each check raises a UserError that names the option, the path and what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from emotion.errors import UserError


def _named(path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def check_output_file(path: str | os.PathLike, option: str | None = None) -> Path:
    """`path` as a Path, if a file can be written there: not a folder, its folder exists and
    may be written in."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {_named(path, option)}: it is a folder; pass a file name, "
                        f"e.g. {path / ('report.json' if option == '--json' else 'out.mp4')}")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {_named(path, option)}: the folder {folder} does not "
                        "exist; create it first or choose another path")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {_named(path, option)}: no permission to write in "
                        f"{folder}")
    return path


def check_output_folder(path: str | os.PathLike, option: str) -> None:
    """If `path` cannot be (or become) a folder to write in: it is an existing file, a file
    stands where one of its parent folders should be, or the nearest existing folder is not
    writable. A missing folder is fine: it is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder: pass a folder (created if "
                        "needed), or move the file away")
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"{option} {path}: {folder} is a file, so no folder can be "
                                "made under it; choose another path")
            if not os.access(folder, os.W_OK):
                raise UserError(f"{option} {path}: cannot write in {folder} (no permission); "
                                "choose another path")
            return


def check_outputs_spare_inputs(outputs: dict, inputs: dict) -> None:
    """UserError if an output would be written over one of the command's inputs (the image,
    the weight file, the data set): the one check every command runs for every input.

    Both maps go from the option (or "the image") to its path, None when not given.
    """
    for option, path in outputs.items():
        for what, source in inputs.items():
            if path and source and same_file(path, source):
                raise UserError(f"{option} {path} is {what} {source}: writing it would destroy "
                                f"that input; give {option} another file name")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path after resolving `..` and symlinks, or
    (for files that exist) the same inode, which also catches hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): then they cannot be one file
        return False
