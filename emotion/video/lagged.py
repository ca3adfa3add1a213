"""Work run on a worker thread while the frames go on, merged a fixed number of frames later.

Much of a frame's work leaves a core idle: it is Python, or OpenCV and BLAS on one thread,
and OpenCV releases the GIL while a cascade runs. So the video pipeline hands two jobs to
workers and goes on with the next frames:

- the periodic full-frame scan (tens to hundreds of milliseconds): the scan of frame k runs
  beside frames k .. k+lag-1, and its new faces join the tracks at frame k+lag;
- the refresh of the tracks' parts and head pose (the eye, smile and profile cascades):
  started at frame k, applied at frame k+1, before that frame's faces are cropped.

    frame k          start the job on its worker (with a copy of the frame)
    frames k+1..     the frames go on as usual
    frame k+lag      wait for the job (it is usually done), then use its result

The result does not depend on timing: the job reads frame k and is used at frame k+lag
whether it finished early or late, so a run is repeatable frame for frame. The cost is that
what it found is lag frames old when it is used: a new face is reported lag frames later
than with the scan in place (the window search of the frames after it brings its box up to
date); a face's eyes level its crop one frame late (they are refreshed every few frames and
carried in between anyway).

Of the scans, only the periodic ones run here. A rescan (a track was lost: its face is wanted
now) runs in place at once, after waiting for the scan in flight, which it supersedes; so
does a scan while nothing is tracked. An error in a worker's job is raised on the main thread
when the job is taken, at frame k+lag or at the rescan that supersedes it.

Only one job of each kind is in flight at a time. OpenCV's CascadeClassifier must not be
used by two threads at once, so each worker runs with its own copy of the detectors
(FaceDetector.clone, PartsDetector.clone, and pipeline.profile_detector, one per thread).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor


class Ahead:
    """`start(frame_index, *args)` runs `work(*args)` on a worker thread; `due(frame_index)` /
    `take()` its result at start + lag. The worker thread ends when the Ahead is
    garbage-collected."""

    def __init__(self, work, lag: int, name: str = "ahead"):
        if lag < 1:
            raise ValueError("Ahead: lag must be >= 1 (0 is the work in place)")
        self.work, self.lag = work, lag
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._future: Future | None = None
        self._due = -1

    @property
    def busy(self) -> bool:
        return self._future is not None

    def start(self, frame_index: int, *args) -> None:
        """Run work(*args) on the worker (the arguments must not change meanwhile: pass a
        copy of a frame the caller reuses); its result is due at frame_index + lag."""
        if self.busy:
            raise RuntimeError("Ahead.start: a job is already in flight")
        self._future = self._pool.submit(self.work, *args)
        self._due = frame_index + self.lag

    def due(self, frame_index: int) -> bool:
        return self.busy and frame_index >= self._due

    def take(self):
        """The job's result, waiting for it if it is still running (its error, if any, is
        raised here)."""
        future, self._future = self._future, None
        return future.result()

