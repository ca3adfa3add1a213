"""Work run on a worker thread while the frames go on, used a fixed number of frames later.

The periodic full-frame scan for new faces (tens to hundreds of milliseconds) would stall the
frame it runs on. Much of a frame's other work leaves a core idle (Python, or OpenCV and
BLAS on one thread), and OpenCV releases the GIL while a cascade runs; so while faces are
followed, the video pipeline (emotion.video.follow) hands the scan of frame k to a worker
and goes on with the next frames:

    frame k          start the job on its worker (with a copy of the frame)
    frames k+1..     the frames go on as usual
    frame k+lag      wait for the job (it is usually done), then use its result

The result does not depend on timing: the job reads frame k and is used at frame k+lag
whether it finished early or late, so a run is repeatable frame for frame. The cost is that
what it found is lag frames old when it is used: a new face is reported lag frames later
than with the scan in place, and its box is looked for again where the face is now.

A rescan (a face was lost: it is wanted now) runs in place at once, after waiting for the
scan in flight, which it supersedes; so does a scan while no face is followed. An error in
the worker's job is raised on the main thread when the job is taken, at frame k+lag or at
the rescan that supersedes it. One job is in flight at a time, with a detector of its own
(FaceDetector.clone): an OpenCV CascadeClassifier must not be used by two threads at once.
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

