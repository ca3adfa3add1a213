"""The one frame loop: a video source in, (frame, faces) out, every output written.

    with FrameLoop("clip.mp4", weights="mobile_face", csv="faces.csv", out="annotated.mp4") as loop:
        for frame, faces in loop:             # decoded, detected, tracked, classified
            loop.write(loop.draw(frame, faces))  # to --out (opened on the first frame)

`emotion video` adds a progress bar and the frame-count check, `emotion live` a window and
the FPS; both are this loop. FrameLoop owns what a run opens (the source, the classifier,
the face pipeline, the row writer, the video writer) and releases all of it on the way out,
whether the loop ended, broke off, or raised.

Three things run at once, because OpenCV releases Python's GIL while it decodes, encodes and
runs its cascades: a reader thread decodes the next frames while the main thread detects
and classifies, and a writer thread encodes the annotated frames behind it. The queues
between them hold a few frames, so memory stays flat however long the video.

A file is read in order and nothing is dropped: every input frame comes out once, in order,
and `video` writes it. A camera or stream (drop_stale) keeps only the newest frame instead:
when the pipeline is slower than the camera, older frames are dropped, and counted, so what
is shown stays current rather than falling further and further behind.
"""

from __future__ import annotations

import queue
import threading
import time

from emotion.video import pipeline
from emotion.video.follow import FollowPipeline
from emotion.io.rows import RowWriter, face_rows
from emotion.io.outputs import refuse_existing
from emotion.video.sources import check_output_paths, check_video_name, open_video, open_writer

_END = object()  # what the threads put in a queue after the last frame


class FrameReader:
    """Decodes a VideoSource's frames on a thread of its own; iterate to get them in order."""

    def __init__(self, source, max_frames: int | None = None, drop_stale: bool = False,
                 depth: int = 4):
        self.source, self.max_frames, self.drop_stale = source, max_frames, drop_stale
        self.frames = queue.Queue(maxsize=1 if drop_stale else depth)
        self.dropped = 0  # frames replaced by a newer one before the pipeline took them
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self):
        try:
            for frame in self.source.frames(self.max_frames):
                if self.drop_stale:
                    try:  # a frame nobody has taken yet is older than this one: replace it
                        self.frames.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                if not self._put(frame):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            self.error = err
        finally:
            self._put(_END)

    def __iter__(self):
        while True:
            item = self.frames.get()
            if item is _END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self) -> None:
        """End the thread (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._thread.join()


class FrameWriter:
    """Encodes frames into a video file on a thread of its own, in the order given.
    `opener(path, fps, size)` makes the VideoWriter: mp4v by default (emotion serve's jobs
    pass one for WebM)."""

    def __init__(self, path, fps: float, size: tuple[int, int], depth: int = 8,
                 opener=open_writer):
        self.writer = opener(path, fps, size)  # here: a failure is the caller's error
        self.frames = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="frame-writer", daemon=True)
        self._thread.start()

    def _write(self):
        while True:
            image = self.frames.get()
            if image is _END:
                return
            if self.error is None:
                try:
                    self.writer.write(image)
                except BaseException as err:  # noqa: BLE001 - raised by write() or close()
                    self.error = err

    def write(self, image) -> None:
        """Queue one 8-bit BGR frame (the caller must not change it afterwards)."""
        if self.error is not None:
            raise self.error
        self.frames.put(image)

    def close(self) -> None:
        """Write what is queued, then close the file; raises what the thread ran into."""
        self.frames.put(_END)
        self._thread.join()
        self.writer.release()
        if self.error is not None:
            raise self.error


class FrameLoop:
    """See the module docstring. The outputs are checked before anything is opened."""

    def __init__(self, source, weights=None, backend=None, *, detect_every: int | None = None,
                 csv=None, jsonl=None, out=None, max_frames: int | None = None,
                 classifier=None, drop_stale: bool | None = None, show_parts: bool = False,
                 scan_lag: int | None = None, classify_every: int | None = None,
                 overwrite: bool = False, landmarker=None):
        from emotion.cnn.classifier import resolve_weights

        weights_file = None if classifier is not None else resolve_weights(weights)
        outputs = {"--out": out, "--csv": csv, "--jsonl": jsonl}
        check_output_paths(outputs, source=source, inputs={"the weight file": weights_file},
                           overwrite=True)
        check_video_name(out)
        refuse_existing(outputs, overwrite)  # last: the messages above say more
        self.source_name, self.out, self.max_frames = source, out, max_frames
        self.show_parts = show_parts
        self._drop_stale = drop_stale
        self._settings = dict(weights=weights, backend=backend, csv=csv, jsonl=jsonl,
                              classifier=classifier, landmarker=landmarker,
                              detect_every=detect_every,
                              scan_lag=scan_lag, classify_every=classify_every)
        self.source = self.faces = self.rows = self.reader = self.writer = None
        self.track_ids: set[int] = set()
        self._closed = False
        self.frames_done = 0  # frames through the pipeline (the reader may be ahead of it)
        self.seconds = 0.0    # wall time from the first frame asked for to the end

    def __enter__(self):
        s = self._settings
        try:
            self.source = open_video(self.source_name)
            classifier = s["classifier"] or pipeline.load_classifier(s["weights"], s["backend"])
            options = {k: s[k] for k in ("detect_every", "scan_lag", "classify_every")
                       if s[k] is not None}
            # A caller that runs many files (batch) passes the landmark model it keeps loaded.
            landmarker = s["landmarker"] or pipeline.load_landmarker(classifier, s["backend"])
            self.faces = FollowPipeline(classifier, landmarker, **options)
            self.faces.show_parts = self.show_parts
            self.rows = RowWriter(s["csv"], s["jsonl"])
            drop = self.source.live if self._drop_stale is None else self._drop_stale
            self.reader = FrameReader(self.source, self.max_frames, drop_stale=drop)
        except BaseException:
            self.close()
            raise
        return self

    def __iter__(self):
        self._start = time.perf_counter()
        for frame in self.reader:
            results = self.faces.process(frame.image, frame.timestamp)
            self.track_ids.update(r.track_id for r in results)
            self.rows.write(face_rows(frame.index, frame.timestamp, results))
            self.frames_done += 1
            yield frame, results

    def summary(self) -> str:
        """The stages' times per frame, and the frames per second the whole loop ran at.

        The two differ: decoding and encoding run on threads of their own, beside the
        stages of the main thread, so the end-to-end rate is more than 1000 / the sum.
        """
        fps = self.frames_done / self.seconds if self.seconds > 0 else 0.0
        return f"{self.faces.timings.summary()}; {fps:.1f} frames/s end to end"

    def draw(self, frame, results, fps: float | None = None):
        """Annotate the frame's image in place (boxes, labels, bars); returns it."""
        return self.faces.draw(frame.image, results, fps)

    def write(self, image) -> None:
        """Append an 8-bit BGR frame to --out (nothing without --out)."""
        if not self.out:
            return
        if self.writer is None:  # the size is known only once a frame is decoded
            h, w = image.shape[:2]
            self.writer = FrameWriter(self.out, self.source.fps, (w, h))
        self.writer.write(image)

    @property
    def dropped(self) -> int:
        return self.reader.dropped if self.reader is not None else 0

    def close(self) -> None:
        """Release everything that was opened (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "_start"):
            self.seconds = time.perf_counter() - self._start
        try:
            if self.reader is not None:
                self.reader.stop()
            if self.source is not None:
                self.source.release()
            if self.writer is not None:
                writer, self.writer = self.writer, None
                writer.close()
        finally:
            if self.rows is not None:
                self.rows.close()
            if self.faces is not None and self.source is not None:
                self.faces.timings.add("decode", self.source.read_seconds)

    def __exit__(self, *exc):
        self.close()
        return False
