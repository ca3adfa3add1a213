"""One model, one inference thread, two lanes: live frames before the bounded uploads queue.

The event loop must never run the CNN or the face detector: while it computes, no other
request (not even /api/health) is answered. So every piece of inference is handed to a
single worker thread. One thread, not a pool: there is one model instance (its weights in
memory once), and nnlite's model is not written to be called from two threads at once.

In front of that thread are two lanes:

    LIVE     camera frames of the live sockets: at most one per socket (live.py keeps only
             the newest), at most MAX_LIVE sockets, so this lane is short by construction
    UPLOADS  /api/predict and /api/explain: bounded; a request that finds `max_pending`
             already waiting or running is refused at once with 503 (Busy)

and the thread takes jobs in rounds: the live frames that waited behind the last upload,
then the next upload, then the live frames that came meanwhile, and so on (with nothing
of the other lane waiting, it just takes the next of the one that has work). So a live
frame waits behind at most one upload (~100 ms) and the other sockets' frames, however
many uploads are queued: a camera needs an answer within a frame or two, a photo upload
can wait a second. And the uploads are not starved: strict priority for live frames was
tried first, and two sockets that each send their next frame as soon as they have an
answer kept the live lane full for good (13 predict answers in 30 s, p50 17 s, in
benchmarks/serve_load). With one first-come queue, a live frame waited behind all eight
queued predicts instead: ~850 ms (2026-12-03, 2-vCPU Intel Xeon KVM guest,
`python -m benchmarks.serve_load`; benchmarks/RESULTS.md, serve).

The video jobs run on threads of their own (emotion/serve/jobs.py) and call the model too:
SharedClassifier puts a lock around it, so the model still runs one batch at a time.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from concurrent.futures import Future

LIVE, UPLOADS = 0, 1  # the lanes, in the order the thread serves them


class Busy(Exception):
    """The inference queue is full: answered with 503 and Retry-After."""


class SharedClassifier:
    """The one classifier, for several threads: `predict_faces` one call at a time.

    `lock` is public so that whatever uses the model directly (explain's forward and backward
    passes) holds it too; every other attribute is the classifier's own.
    """

    def __init__(self, classifier):
        self.classifier = classifier
        self.lock = threading.RLock()

    def predict_faces(self, crops):
        with self.lock:
            return self.classifier.predict_faces(crops)

    def __getattr__(self, name):
        return getattr(self.classifier, name)


class InferenceWorker:
    """`await worker.run(fn, *args, lane=...)`: fn on the inference thread; Busy when the
    uploads lane is full. The live lane is not bounded here: its callers bound it."""

    def __init__(self, max_pending: int = 8):
        self.max_pending = max_pending
        self.pending = 0  # uploads waiting or running; changed only on the event loop's thread
        self.lanes = (collections.deque(), collections.deque())  # LIVE, UPLOADS
        self.wakeup = threading.Condition()
        self.closing = False
        self.live_turns = 0  # live frames to take before the next upload (see _next)
        self.upload_ran = False
        self.thread = threading.Thread(target=self._serve, name="inference", daemon=True)
        self.thread.start()

    async def run(self, fn, *args, lane: int = UPLOADS):
        bounded = lane == UPLOADS
        if bounded and self.pending >= self.max_pending:
            raise Busy(f"the server is busy ({self.pending} requests waiting): try again")
        future: Future = Future()
        with self.wakeup:
            if self.closing:
                raise Busy("the server is shutting down")
            self.lanes[lane].append((future, fn, args))
            self.wakeup.notify()
        self.pending += bounded
        try:
            return await asyncio.wrap_future(future)
        finally:
            self.pending -= bounded

    def _serve(self) -> None:
        """The inference thread: the oldest job of the first lane that holds one."""
        while True:
            with self.wakeup:
                while not (self.closing or any(self.lanes)):
                    self.wakeup.wait()
                if self.closing:
                    return
                future, fn, args = self._next()
            if not future.set_running_or_notify_cancel():
                continue  # its client went away while it waited
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting request
                future.set_exception(err)

    def _next(self):
        """The next job (called holding `wakeup`, with some lane not empty): a live frame if
        it has a turn left or no upload waits, else an upload, after which every live frame
        that waited behind it gets a turn."""
        live, uploads = self.lanes
        if self.upload_ran:  # every frame that came while it waited or ran: one turn each
            self.live_turns, self.upload_ran = len(live), False
        if live and (self.live_turns > 0 or not uploads):
            self.live_turns = max(0, self.live_turns - 1)
            return live.popleft()
        self.upload_ran = True
        return uploads.popleft()

    def close(self) -> None:
        """Finish the job that is running, cancel the waiting ones, stop the thread."""
        with self.wakeup:
            self.closing = True
            waiting = [job for lane in self.lanes for job in lane]
            for lane in self.lanes:
                lane.clear()
            self.wakeup.notify()
        for future, _, _ in waiting:
            future.cancel()
        self.thread.join()
