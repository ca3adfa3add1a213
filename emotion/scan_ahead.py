"""The video pipeline's full-frame scan, run on a worker thread while the frames go on.

A full scan looks at every position and size of the frame (tens of milliseconds at 720p),
while the rest of a frame's work (the tracks' window searches, the parts, the CNN, the
drawing) leaves a core idle much of the time: much of it is Python, or OpenCV and BLAS on one
thread. So the scan of frame k runs beside frames k .. k+lag-1 and its faces join the tracker
at frame k+lag:

    frame k          start the scan of k on the worker; the tracks' windows as usual
    frames k+1..     windows or carry, as usual
    frame k+lag      wait for the scan (it is usually done), then hand the tracker this
                     frame's windows plus the scan's faces that no window found: the new faces

The result does not depend on timing: the scan reads frame k and is merged at frame k+lag
whether it finished early or late, so a run is repeatable frame for frame. The cost is that
a new face is reported lag frames later than with the scan in place, from a box lag frames
old; the window search of the frames after it brings the box up to date.

Only the periodic scans run here. A rescan (a track was lost: its face is wanted now) runs in
place at once, after waiting for the scan in flight, which it supersedes; so does a scan
while nothing is tracked. An error in the worker's scan is raised on the main thread when
the scan is taken, at frame k+lag or at the rescan that supersedes it.

Only one scan is in flight at a time. OpenCV's CascadeClassifier must not be used by two
threads at once, so the worker scans with its own copy of the detector (FaceDetector.clone).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from emotion.detect import Box, overlap_fraction


class ScanAhead:
    """`start(gray, frame_index)` a scan; `due(frame_index)` / `take()` its faces at
    start + lag. The worker thread ends when the ScanAhead is garbage-collected."""

    def __init__(self, detector, lag: int):
        if lag < 1:
            raise ValueError("ScanAhead: lag must be >= 1 (0 is the scan in place)")
        self.detector, self.lag = detector, lag
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-scan")
        self._future: Future | None = None
        self._due = -1

    @property
    def busy(self) -> bool:
        return self._future is not None

    def start(self, gray: np.ndarray, frame_index: int) -> None:
        """Scan `gray` (which must not change meanwhile: pass a copy if the caller reuses
        it) on the worker; its faces are due at frame_index + lag."""
        if self.busy:
            raise RuntimeError("ScanAhead.start: a scan is already in flight")
        self._future = self._pool.submit(self.detector.detect, gray)
        self._due = frame_index + self.lag

    def due(self, frame_index: int) -> bool:
        return self.busy and frame_index >= self._due

    def take(self) -> list[Box]:
        """The scan's faces, waiting for it if it is still running (its error, if any, is
        raised here)."""
        future, self._future = self._future, None
        return future.result()


def new_faces(scanned: list[Box], found: list[Box], max_overlap: float) -> list[Box]:
    """The scanned boxes that no box found this frame covers, nor covers: the faces the
    tracks do not have yet. A scanned box of a tracked face is lag frames old, so it is left
    to the window search, which saw the face where it is now."""
    return [s for s in scanned
            if all(overlap_fraction(s, f) <= max_overlap and overlap_fraction(f, s) <= max_overlap
                   for f in found)]
