"""The live socket, `WS /api/live`: JPEG frames in, each processed frame's faces out.

    browser --binary JPEG--> receive(): keeps only the newest frame (an older one waiting is
                             dropped and counted)
            <--JSON-------- answer(): the newest frame -> decode -> FollowPipeline -> the rows

    {"frame": 12, "faces": [<emotion.io.rows.face_rows rows>], "latency_ms": 31.4, "dropped": 3}

The answer's faces are exactly the rows `emotion video --jsonl` writes (track IDs, smoothed
probabilities, intensity, phase): one FollowPipeline per connection, so each client has its
own tracks and smoothing. Receiving and answering are two tasks: while a frame is being
processed, the frames that arrive replace each other, so a client sending faster than the
server keeps up is answered about its newest frame, one processing time late, never about a
queue of old ones. A frame that does not decode is answered with {"frame": i, "error": ...}
and the session goes on; so is a text message, an empty frame, one over MAX_FRAME_BYTES and
one over the server's pixel cap. A session that sends nothing for `idle_timeout` seconds
(while no frame of it is waiting or being processed) is closed with 1000: it would hold one
of the MAX_LIVE places for good otherwise, and the page reconnects when it has frames again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from emotion.video.follow import FollowPipeline
from emotion.io.rows import face_rows
from emotion.serve.uploads import DEFAULT_MAX_PIXELS, UploadError, decode_image
from emotion.serve.worker import LIVE

log = logging.getLogger("emotion.serve")

MAX_LIVE = 4           # sockets at once; each adds one frame's work to the queue
MAX_FRAME_BYTES = 4 * 2**20  # one camera frame as JPEG is ~50-200 kB
IDLE_TIMEOUT = 60.0  # seconds without a frame before a session is closed (--idle-timeout)


class LiveSession:
    """One client's stream: its own face pipeline (tracks, smoothing, phases)."""

    def __init__(self, classifier, max_pixels: int = DEFAULT_MAX_PIXELS, landmarker=None):
        self.faces = FollowPipeline(classifier, landmarker)
        self.start = time.monotonic()
        self.max_pixels = max_pixels

    def step(self, index: int, data: bytes | UploadError, received: float) -> dict:
        """Runs on the inference thread: one frame's answer (`data` is the refusal already
        when the message was no frame at all)."""
        try:
            if isinstance(data, UploadError):
                raise data
            image = decode_image(data, self.max_pixels)
        except UploadError as err:
            return {"frame": index, "error": f"frame {index}: {err}"}
        results = self.faces.process(image, received - self.start)
        return {"frame": index, "faces": face_rows(index, received - self.start, results)}


def frame_bytes(message: dict) -> bytes | UploadError:
    """The frame a socket message carries, or why it is none (answered as a frame that does
    not decode; an empty frame is left to decode_image, which says so)."""
    data = message.get("bytes")
    if data is None:
        return UploadError(415, "a text message, not a frame: send each frame as a binary "
                                "JPEG message")
    if len(data) > MAX_FRAME_BYTES:
        return UploadError(413, f"{len(data) / 2**20:.1f} MB, over the "
                                f"{MAX_FRAME_BYTES / 2**20:g} MB a frame may have")
    return data


async def serve_live(websocket: WebSocket, classifier, worker, sessions: set,
                     idle_timeout: float = IDLE_TIMEOUT,
                     max_pixels: int = DEFAULT_MAX_PIXELS, landmarker=None) -> None:
    await websocket.accept()
    if len(sessions) >= MAX_LIVE:
        await websocket.close(code=1013, reason=f"server busy: {MAX_LIVE} live sessions already")
        return
    session = LiveSession(classifier, max_pixels, landmarker)
    sessions.add(session)
    newest: list = []  # [(index, bytes, time received)], at most one
    arrived = asyncio.Event()
    state = {"received": 0, "dropped": 0, "open": True, "working": False, "idle": False}

    async def receive():
        try:
            while True:
                try:
                    message = await asyncio.wait_for(websocket.receive(), idle_timeout)
                except asyncio.TimeoutError:
                    if newest or state["working"]:
                        continue  # the client waits for its answer: not idle
                    state["idle"] = True
                    break
                if message["type"] == "websocket.disconnect":
                    break
                data = frame_bytes(message)
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
            state["working"] = True
            try:
                answer = await worker.run(session.step, index, data, received, lane=LIVE)
            finally:
                state["working"] = False
            if "error" in answer:
                log.warning("live: %s", answer["error"])
            answer["latency_ms"] = round(1000 * (time.monotonic() - received), 1)
            answer["dropped"] = state["dropped"]
            await websocket.send_json(answer)
        if state["idle"]:
            log.info("live: a session idle for %g s closed", idle_timeout)
            await websocket.close(code=1000, reason=f"no frame for {idle_timeout:g} s")
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
