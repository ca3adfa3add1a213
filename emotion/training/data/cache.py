"""The parse cache: a source's parsed arrays kept as a compact .npz beside it (or in
$EMOTION_CACHE), rebuilt whenever the source's size or modification time changes."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from emotion.training.data.dataset import CACHE_VERSION, Table
from emotion.training.data.folders import list_image_folder

def cache_dir() -> Path:
    """Where caches go when the source's own folder is read-only: $EMOTION_CACHE or
    ~/.cache/emotion."""
    return Path(os.environ.get("EMOTION_CACHE") or Path.home() / ".cache" / "emotion")


def _cache_paths(source: Path) -> list[Path]:
    """[next to the source, in cache_dir()]: where a cache is looked for, in this order."""
    beside = source / ".emotion-cache.npz" if source.is_dir() else source.with_name(
        source.name + ".cache.npz")
    key = hashlib.sha256(str(source).encode()).hexdigest()[:16]  # one per absolute path
    return [beside, cache_dir() / f"{source.name}-{key}.cache.npz"]


def source_signature(source: Path) -> dict:
    """What must not change for a cache to stay valid: format version, path, size and mtime
    (for a folder: a digest of every image file's name, size and mtime)."""
    if source.is_file():
        stat = source.stat()
        return {"version": CACHE_VERSION, "source": str(source), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns}
    digest = hashlib.sha256()
    for file, label, usage in list_image_folder(source):
        stat = file.stat()
        digest.update(f"{file.relative_to(source)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {"version": CACHE_VERSION, "source": str(source), "files": digest.hexdigest()}


def load_cache(source: Path, signature: dict) -> Table | None:
    for path in _cache_paths(source):
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                if meta.get("signature") != signature:
                    continue  # stale: the source changed (or another version wrote it)
                where = stored["skipped_where"].tolist()
                skipped = list(zip(where if meta["layout"] == "folders" else map(int, where),
                                   stored["skipped_reason"].tolist()))
                return Table(images=stored["images"], labels=stored["labels"].astype(np.int64),
                              usage=stored["usage"].astype(np.int64),
                              rows=stored["rows"].astype(np.int64), n_rows=meta["n_rows"],
                              layout=meta["layout"], skipped=skipped)
        except (OSError, ValueError, KeyError, EOFError) as err:  # damaged: rebuild it
            print(f"emotion: ignoring unreadable cache {path} ({err})", file=sys.stderr)
    return None


def save_cache(source: Path, signature: dict, table: Table) -> Path | None:
    """Write the table next to the source if that folder is writable, else in cache_dir().

    Bad rows are cached too (with their reasons), so one cache serves both skip_bad_rows
    settings: a strict load raises the same error from the cache as from the source.
    """
    meta = {"signature": signature, "layout": table.layout, "n_rows": table.n_rows}
    arrays = {
        "images": table.images.astype(np.uint8),  # 1 byte per pixel: 83 MB for all of FER2013
        "labels": table.labels.astype(np.int8),
        "usage": table.usage.astype(np.int8),
        "rows": table.rows.astype(np.int32),
        "skipped_where": np.array([str(w) for w, _ in table.skipped], dtype=str),
        "skipped_reason": np.array([r for _, r in table.skipped], dtype=str),
        "meta": np.array(json.dumps(meta)),
    }
    beside, elsewhere = _cache_paths(source)
    targets = [beside, elsewhere] if _is_writable_dir(beside.parent) else [elsewhere]
    for path in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, arrays)
            return path
        except OSError:
            continue
    print(f"emotion: could not write a cache for {source} (tried {', '.join(map(str, targets))});"
          " the next load will parse it again", file=sys.stderr)
    return None


def _is_writable_dir(folder: Path) -> bool:
    # os.access says yes to root everywhere, so also respect the folder's own permission bits:
    # a dataset folder marked read-only (like a shared copy) is left untouched even then.
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def write_atomically(path: Path, arrays: dict) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`: a reader
    (or a crash half-way) never sees a half-written cache."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a cache is for every user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
