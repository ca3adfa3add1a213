"""The live socket, `WS /api/live`: JPEG frames in, each processed frame's faces out.

    browser --binary JPEG--> receive(): keeps only the newest frame (an older one waiting is
                             dropped and counted)
            <--JSON-------- answer(): the newest frame -> decode -> FacePipeline -> the rows

    {"frame": 12, "faces": [<emotion.io.rows.face_rows rows>], "latency_ms": 31.4, "dropped": 3}

The answer's faces are exactly the rows `emotion video --jsonl` writes (track IDs, smoothed
probabilities, intensity, phase): one FacePipeline per connection, so each client has its
own tracks and smoothing. Receiving and answering are two tasks: while a frame is being
processed, the frames that arrive replace each other, so a client sending faster than the
server keeps up is answered about its newest frame, one processing time late, never about a
queue of old ones. A frame that does not decode is answered with {"frame": i, "error": ...}
and the session goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from emotion.video import pipeline
from emotion.io.rows import face_rows
from emotion.serve.uploads import UploadError, decode_image
from emotion.serve.worker import LIVE

log = logging.getLogger("emotion.serve")

MAX_LIVE = 4           # sockets at once; each adds one frame's work to the queue
MAX_FRAME_BYTES = 4 * 2**20  # one camera frame as JPEG is ~50-200 kB


class LiveSession:
    """One client's stream: its own face pipeline (tracks, smoothing, phases)."""

    def __init__(self, classifier):
        self.faces = pipeline.FacePipeline(classifier)
        self.start = time.monotonic()

    def step(self, index: int, data: bytes, received: float) -> dict:
        """Runs on the inference thread: one frame's answer."""
        try:
            image = decode_image(data)
        except UploadError as err:
            return {"frame": index, "error": f"frame {index}: {err}"}
        results = self.faces.process(image, received - self.start)
        return {"frame": index, "faces": face_rows(index, received - self.start, results)}


async def serve_live(websocket: WebSocket, classifier, worker, sessions: set) -> None:
    await websocket.accept()
    if len(sessions) >= MAX_LIVE:
        await websocket.close(code=1013, reason=f"server busy: {MAX_LIVE} live sessions already")
        return
    session = LiveSession(classifier)
    sessions.add(session)
    newest: list = []  # [(index, bytes, time received)], at most one
    arrived = asyncio.Event()
    state = {"received": 0, "dropped": 0, "open": True}

    async def receive():
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None or len(data) > MAX_FRAME_BYTES:
                    data = b""  # answered as a frame that does not decode
                if newest:
                    state["dropped"] += 1
                    newest.clear()
                newest.append((state["received"], data, time.monotonic()))
                state["received"] += 1
                arrived.set()
        finally:
            state["open"] = False
            arrived.set()

    receiver = asyncio.create_task(receive())
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            if not state["open"]:
                break
            if not newest:
                continue
            index, data, received = newest.pop()
            answer = await worker.run(session.step, index, data, received, lane=LIVE)
            if "error" in answer:
                log.warning("live: %s", answer["error"])
            answer["latency_ms"] = round(1000 * (time.monotonic() - received), 1)
            answer["dropped"] = state["dropped"]
            await websocket.send_json(answer)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass  # the client went away mid-answer: nothing to tell it
    except Exception as err:  # noqa: BLE001 - one line in the log, not a traceback
        log.error("live: %s: %s", type(err).__name__, err)
        try:
            await websocket.close(code=1011, reason="server error")
        except Exception:  # noqa: BLE001 - already closed
            pass
    finally:
        receiver.cancel()
        sessions.discard(session)
