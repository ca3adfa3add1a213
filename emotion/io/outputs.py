"""Where results go: every output path is checked before any work is done, so that a bad
path costs nothing (not a whole evaluation or video) and nothing is overwritten by accident
(an input video, another output of the same run).

The one policy of every command (README, "Outputs"): an output file that already exists is
refused unless --overwrite is given (add_overwrite_argument, refuse_existing); `train` and
`batch` also continue their own earlier run with --resume. No output, and no clean-up of an
earlier run, may touch one of the command's inputs, with --overwrite or without.

Each check raises a UserError that names the option, the path and what to do instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from emotion.errors import UserError


def _named(path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def add_overwrite_argument(parser) -> None:
    """--overwrite, the same for every command that writes files."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that already exist (without it, an "
                        "existing output file is refused); inputs are never replaced")


def check_output_file(path: str | os.PathLike, option: str | None = None,
                      example: str | None = None) -> Path:
    """`path` as a Path, if a file can be written there: not a folder, its folder exists and
    may be written in. `example` is the file name suggested when `path` is a folder (the
    default fits the option: report.json for --json, out.mp4 for a video)."""
    path = Path(path)
    if path.is_dir():
        example = example or {"--json": "report.json", "--csv": "rows.csv",
                              "--jsonl": "rows.jsonl"}.get(option, "out.mp4")
        raise UserError(f"cannot write {_named(path, option)}: it is a folder; pass a file name, "
                        f"e.g. {path / example}")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {_named(path, option)}: the folder {folder} does not "
                        "exist; create it first or choose another path")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {_named(path, option)}: no permission to write in "
                        f"{folder}")
    return path


def refuse_existing(outputs: dict, overwrite: bool, alternatives: str = "") -> None:
    """UserError for the first output that is an existing file, unless `overwrite`.

    `outputs` maps each option to its path (None when not given). Only regular files count:
    a device such as /dev/null destroys nothing when written. `alternatives` names other ways
    out than --overwrite ("pass --resume to continue that run, ").
    """
    if overwrite:
        return
    for option, path in outputs.items():
        if path and (os.path.isfile(path) or os.path.islink(path)):
            raise UserError(f"{_named(path, option)} already exists: {alternatives}pass "
                            "--overwrite to replace it, or choose another name")


def check_writable_soon(folder: str | os.PathLike, option: str) -> None:
    """Write one block to a new file in `folder`, then remove it: for the long jobs (train,
    evaluate), which must not find out after an hour that their output cannot be made (a
    full disk, or a file system that refuses files, such as /proc, which os.access does not
    see). A disk that fills up later is still possible: the CLI reports that in one line."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".emotion-probe-")
        try:
            os.write(handle, bytes(4096))
            os.fsync(handle)  # a full disk may only say so here
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write in {folder} ({option}): {err.strerror or err}") from None


def check_output_folder(path: str | os.PathLike, option: str, probe: bool = False) -> None:
    """If `path` cannot be (or become) a folder to write in: it is an existing file, a file
    stands where one of its parent folders should be, or the nearest existing folder is not
    writable. A missing folder is fine: it is created. `probe`: also create and remove a file
    in the nearest existing folder (check_writable_soon), for the long jobs."""
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
            if probe:
                check_writable_soon(folder, f"{option} {path}")
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


def write_atomically(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: a crash or
    a full disk leaves the old file whole, never half a new one, and the file gets the
    user's umask (nnlite.serialization.write_atomically, the one atomic writer)."""
    from nnlite.serialization import write_atomically as write

    return write(path, data.encode() if isinstance(data, str) else data)
