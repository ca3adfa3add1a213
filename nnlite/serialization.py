"""Saving and loading weights as `.npz`, atomically and with clear errors.

File layout: one array per parameter/buffer name, plus
    __format__  the format version (an int), checked on load
    __meta__    a JSON string for whatever the caller wants to keep with the weights
                (the emotion app stores the model name and preprocessing config there)
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from nnlite import backends

FORMAT_VERSION = 1


class WeightFileError(ValueError):
    """A weight file is missing, unreadable, or does not match the model."""


def save_arrays(path, arrays: dict, meta=None, dtype=None) -> Path:
    """Write `arrays` (name -> array, any device) to `path` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk, and is then
    renamed over `path`: a run killed mid-write leaves the previous file intact.
    `dtype` (e.g. np.float16) stores floating arrays smaller; they are cast back on load.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {}
    for name, array in arrays.items():
        array = backends.to_numpy(array)
        if dtype is not None and array.dtype.kind == "f":
            array = array.astype(dtype)
        payload[name] = array
    payload["__format__"] = np.array(FORMAT_VERSION)
    payload["__meta__"] = np.array(json.dumps(meta or {}))
    return write_atomically(path, lambda f: np.savez(f, **payload))


def write_atomically(path, data) -> Path:
    """Write `data` (bytes, or a function that writes into an open binary file) to `path`
    atomically: into a temporary file beside it, flushed to disk, then renamed over it. A
    crash or a full disk leaves the old file whole, never half a new one. The file gets the
    user's umask (mkstemp alone makes it private to its owner). An OSError names `path`,
    the file the caller asked for, not the temporary one. The one atomic writer of nnlite
    and of the app (emotion.io.outputs uses it too)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # e.g. a folder in /proc: name the file asked for
        err.filename = str(path)
        raise
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            err.filename = str(path)
        raise
    return path


def load_arrays(path):
    """(arrays, meta) from a file written by `save_arrays`; clear errors otherwise."""
    path = Path(path)
    if path.is_dir():
        raise WeightFileError(f"{path} is a folder, not a weight file")
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    if not os.access(path, os.R_OK):
        raise WeightFileError(f"cannot read weight file {path}: permission denied")
    if not zipfile.is_zipfile(path):  # an .npz is a zip archive
        # (NumPy's own message for such a file, a pickle, text or an image, talks about
        # allow_pickle, which is no advice for a weight file: say what the file is not.)
        with open(path, "rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
        what = "a single .npy array, not an .npz archive" if npy else "not an .npz archive"
        raise WeightFileError(f"cannot read weight file {path}: it is {what} "
                              "(nnlite weights are .npz files written by nnlite.save)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as err:
        raise WeightFileError(f"cannot read weight file {path}: {err}") from err
    if "__format__" not in arrays:
        raise WeightFileError(f"{path} is an .npz file but not one written by nnlite.save "
                              "(it has no __format__ entry)")
    version = arrays.pop("__format__")
    if version.shape != () or version.dtype.kind not in "iu":
        raise WeightFileError(f"{path}: __format__ must be one integer, found "
                              f"{version.dtype} of shape {version.shape}")
    if int(version) != FORMAT_VERSION:
        raise WeightFileError(
            f"{path} has format version {int(version)}, this nnlite reads version {FORMAT_VERSION}"
        )
    return arrays, _parse_meta(path, arrays.pop("__meta__", np.array("{}")))


def _parse_meta(path, raw: np.ndarray) -> dict:
    """__meta__ as a dict: a JSON object stored as one string, or a clear error."""
    if raw.shape != () or raw.dtype.kind != "U":
        raise WeightFileError(f"{path}: __meta__ must be one JSON string, found "
                              f"{raw.dtype} of shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise WeightFileError(f"{path}: __meta__ is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise WeightFileError(f"{path}: __meta__ must be a JSON object, found "
                              f"{type(meta).__name__}")
    return meta


def read_meta(path) -> dict:
    """Only the metadata of a weight file (e.g. to build the right model before loading)."""
    return load_arrays(path)[1]


def save(module, path, meta=None, dtype=None) -> Path:
    """Save a module's parameters and buffers to `path` (.npz), atomically."""
    return save_arrays(path, module.state_dict(), meta, dtype)


def load(module, path) -> dict:
    """Load weights from `path` into `module` (in place); returns the file's metadata.

    A missing file, or names/shapes that do not match the model, raise WeightFileError naming
    the file, the parameter and both shapes; there is never a silent fallback to random weights.
    """
    arrays, meta = load_arrays(path)
    for name, array in arrays.items():
        # A diverged training run leaves NaN weights; a model built on them answers NaN for
        # every input, which no caller should have to discover.
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise WeightFileError(f"{path}: parameter {name!r} holds NaN or infinite values "
                                  "(saved from a run whose loss diverged?)")
    try:
        module.load_state_dict(arrays, source=str(path))
    except ValueError as err:
        raise WeightFileError(str(err)) from err
    return meta
