"""One file's rows: what each Dask task runs on a worker (or this process, with --workers 0).

    analyze_file(media, settings) -> FileResult: the file's table, or one error row

An image is analysed as `emotion predict` does it (pipeline.analyze_image with the
PHOTO_CONFIG detector; frame 0, time 0, no phase), a video as `emotion video` does it (the
one frame loop, emotion/video/loop.py, with VIDEO_CONFIG, tracking and smoothing). The rows are
emotion.io.rows' face rows with the file in front and an `error` column behind:

    file, file_bytes, <emotion.io.rows.COLUMNS>, error

A file name is bytes on POSIX, and need not be UTF-8 (b'caf\\xe9.jpg', from a Latin-1 era
archive); Python hands it over with each undecodable byte as a lone surrogate, which no
Arrow string (UTF-8) can hold. So `file` is the name as text, such a byte shown as U+FFFD,
and `file_bytes` the name's exact bytes, only where `file` is not exact (null otherwise):
nothing is lost, and ordinary names are stored once (file_columns).

A file without any face gets one row with only `file` set, so that every input is in the
table; a file that fails gets one row with `file` and `error`. A video that stops decoding
well before its declared length keeps the rows of the frames that were read and adds the
error row: the file did not fully succeed, and the rows that exist are not thrown away.

A worker runs one task at a time: OpenCV, BLAS and Numba each on one thread, so that N worker
processes fill N cores without fighting over them. A video's pipeline adds its helper
thread (the full-frame scan, emotion/video/lagged.py), as `emotion video` runs it, so that the
rows are the same; it takes up to a core's spare time while the main thread waits on it or
on I/O. The classifier is loaded once per worker thread (a cached
global), not once per file.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa

from emotion.video import follow, pipeline

from emotion.io.rows import COLUMNS, face_rows, flat_row
from emotion.errors import UserError

# Rows are turned into Arrow columns this many at a time: a long video's results then take
# ~150 bytes a row instead of a Python dict's ~1.5 kB.
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class BatchSettings:
    """Everything besides the file that decides its rows (and so is kept in the manifest)."""

    image_weights: str          # weight file or shipped name for images (predict's default)
    video_weights: str          # ... and for videos (video's default)
    backend: str                # the nnlite backend, chosen once by the client for all workers
    detect_every: int = follow.DETECT_EVERY
    classify_every: int = follow.CLASSIFY_EVERY
    max_frames: int | None = None


@dataclass
class FileResult:
    name: str
    key: str
    table: pa.Table
    frames: int = 0             # frames analysed (1 for an image)
    error: str | None = None
    seconds: float = 0.0        # wall time of the task, on the worker


def columns() -> list[str]:
    return ["file", "file_bytes", *COLUMNS, "error"]


def file_columns(name: str) -> tuple[str, bytes | None]:
    """(file, file_bytes) for a file name as Python gives it (see the module docstring)."""
    raw = os.fsencode(name)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), raw


def safe_text(text: str) -> str:
    """`text` as valid UTF-8 (a message may quote a file name that is not): each lone
    surrogate becomes U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _table(data: dict) -> pa.Table:
    """An Arrow table of these columns; file_bytes is binary even when all null, so that
    every part has the same type for it."""
    data["file_bytes"] = pa.array(data["file_bytes"], pa.binary())
    return pa.table(data)


class TableBuilder:
    """Collects one file's rows into an Arrow table, CHUNK_ROWS rows at a time."""

    def __init__(self, name: str):
        self.name, self.rows, self.chunks = name, [], []
        self.file, self.file_bytes = file_columns(name)

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(flat_row(row) for row in rows)  # pose and parts in columns
        if len(self.rows) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            data = {c: [row.get(c) for row in self.rows] for c in columns()}
            data["file"] = [self.file] * len(self.rows)
            data["file_bytes"] = [self.file_bytes] * len(self.rows)
            self.chunks.append(_table(data))
            self.rows = []

    def table(self, error: str | None = None) -> pa.Table:
        """The rows sorted by (frame, track_id), then the error row if any; the no-face row
        when there is neither."""
        self._flush()
        tables = self.chunks
        if tables:
            # (Chunks may differ in type where a column is all null in one of them.)
            table = pa.concat_tables(tables, promote_options="permissive")
            tables = [table.sort_by([("frame", "ascending"), ("track_id", "ascending")])]
        if error is not None or not tables:
            data = {c: [None] for c in columns()}
            data.update(file=[self.file], file_bytes=[self.file_bytes],
                        error=[None if error is None else safe_text(error)])
            tables.append(_table(data))
        return pa.concat_tables(tables, promote_options="permissive")


def analyze_file(media, settings: BatchSettings) -> FileResult:
    """The rows of one file; never raises for a problem with the file itself."""
    start = time.perf_counter()
    rows = TableBuilder(media.name)
    frames, error = 0, None
    try:
        with one_core(settings.backend):
            if media.kind == "image":
                frames = _analyze_image(media, settings, rows)
            elif media.kind == "video":
                frames, error = _analyze_video(media, settings, rows)
            else:
                raise UserError(f"{media.name} is neither an image nor a video file (by its "
                                f"extension)")
    except UserError as err:
        error = str(err)
    except Exception as err:  # noqa: BLE001 - a decoder or library failure: this file only
        error = f"{type(err).__name__}: {err}"
    return FileResult(media.name, media.key, rows.table(error), frames, error,
                      time.perf_counter() - start)


def _analyze_image(media, settings: BatchSettings, rows: TableBuilder) -> int:
    from emotion.io.images import read_image

    classifier = _classifier(settings.image_weights, settings.backend)
    detector, parts = _photo_detectors()
    image = read_image(media.path)
    results = pipeline.analyze_image(classifier, image, detector, parts,
                                     landmarker=_landmarker(classifier, settings.backend))
    rows.add(face_rows(0, 0.0, results))
    return 1


def _analyze_video(media, settings: BatchSettings, rows: TableBuilder) -> tuple[int, str | None]:
    from emotion.video.loop import FrameLoop

    classifier = _classifier(settings.video_weights, settings.backend)
    loop = FrameLoop(media.path, classifier=classifier,
                     landmarker=_landmarker(classifier, settings.backend),
                     detect_every=settings.detect_every,
                     classify_every=settings.classify_every, max_frames=settings.max_frames)
    with loop:
        for frame, results in loop:
            rows.add(face_rows(frame.index, frame.timestamp, results))
    source = loop.source
    if source.frames_read == 0:
        raise UserError(f"could not read any frame from {media.name}: empty or corrupt video")
    return source.frames_read, source.truncation_warning()


# -- per worker: one core, the model loaded once --------------------------------------------
_local = threading.local()


@contextmanager
def one_core(backend: str):
    """OpenCV, BLAS and (on the numba backend) Numba on one thread while a file is analysed,
    as they were before afterwards (--workers 0 runs in the command's own process)."""
    import cv2

    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    numba = numba_threads = None
    if backend == "numba":
        import numba

        numba_threads = numba.get_num_threads()  # (a setting of the calling thread)
        numba.set_num_threads(1)
    try:
        with pipeline.one_blas_thread():
            yield
    finally:
        cv2.setNumThreads(cv_threads)
        if numba is not None:
            numba.set_num_threads(numba_threads)


def _classifier(weights: str, backend: str):
    cache = _local.__dict__.setdefault("classifiers", {})
    if (weights, backend) not in cache:
        cache[weights, backend] = pipeline.load_classifier(weights, backend)
    return cache[weights, backend]


def _landmarker(classifier, backend: str):
    """The landmark model beside `classifier` (the classifier itself when it has the
    geometry head), once per worker thread, as the classifiers."""
    if getattr(classifier, "has_geometry", False):
        return classifier
    return _classifier(pipeline.LANDMARK_WEIGHTS, backend)


def _photo_detectors():
    """predict's detectors (pipeline.photo_detectors), loaded once per worker thread: an
    OpenCV cascade must not be used by two threads at once."""
    if not hasattr(_local, "photo_detectors"):
        _local.photo_detectors = pipeline.photo_detectors()
    return _local.photo_detectors
