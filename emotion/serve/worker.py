"""One model, one inference thread, a bounded queue.

The event loop must never run the CNN or the face detector: while it computes, no other
request (not even /api/health) is answered. So every piece of inference is handed to a
single worker thread. One thread, not a pool: there is one model instance (its weights in
memory once), and nnlite's model is not written to be called from two threads at once.

The queue in front of that thread is bounded. A request that finds `max_pending` jobs
already waiting is refused at once with 503 (Busy) instead of waiting without end, so a
flood of uploads costs the server at most `max_pending` decoded images of memory and the
clients a quick "try again". A live socket keeps at most one frame in flight of its own,
and there are at most MAX_LIVE sockets, so its frames wait in line without the bound.

The video jobs run on threads of their own (emotion/serve/jobs.py) and call the model too:
SharedClassifier puts a lock around it, so the model still runs one batch at a time.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor


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
    """`await worker.run(fn, *args)`: fn on the inference thread; Busy when the queue is full."""

    def __init__(self, max_pending: int = 8):
        self.max_pending = max_pending
        self.pending = 0  # waiting or running; changed only on the event loop's thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    async def run(self, fn, *args, bounded: bool = True):
        if bounded and self.pending >= self.max_pending:
            raise Busy(f"the server is busy ({self.pending} requests waiting): try again")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.pending -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
