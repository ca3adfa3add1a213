"""One model, one inference thread, two lanes: live frames first, then the bounded queue.

The event loop must never run the CNN or the face detector: while it computes, no other
request (not even /api/health) is answered. So every piece of inference is handed to a
single worker thread. One thread, not a pool: there is one model instance (its weights in
memory once), and nnlite's model is not written to be called from two threads at once.

In front of that thread are two lanes, and the thread always takes from the first that
holds something:

    LIVE     camera frames of the live sockets: at most one per socket (live.py keeps only
             the newest), at most MAX_LIVE sockets, so this lane is short by construction
    UPLOADS  /api/predict and /api/explain: bounded; a request that finds `max_pending`
             already waiting or running is refused at once with 503 (Busy)

So a live frame never waits behind more than the one upload already running (~100 ms),
however many are queued: a camera needs an answer within a frame or two, a photo upload
can wait a second. Under a flood of uploads the live frames still get through, and the
uploads cost the server at most `max_pending` decoded images of memory and the clients a
quick "try again". (With one first-come queue, a live frame waited behind all eight
queued predicts: ~850 ms on the 2-core machine of benchmarks/RESULTS.md.) Uploads cannot
starve: live frames are answered before the next is taken, so the live lane holds at most
one frame per socket between two uploads.

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
                future, fn, args = (self.lanes[LIVE] or self.lanes[UPLOADS]).popleft()
            if not future.set_running_or_notify_cancel():
                continue  # its client went away while it waited
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting request
                future.set_exception(err)

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
