"""What a request may send: a size limit enforced before the body is read whole, the upload
taken from a multipart form or the raw body, and the content sniffed by decoding it.

Nothing here trusts the client. Content-Length is checked first (a 413 without reading a
byte of a body announced too big), and the bytes are counted while they stream in as well,
because a chunked request announces no length at all. The file name is kept only as a
label for the JSON answer, never as a path. Whether the bytes are an image is decided by
decoding them (cv2.imdecode), not by the name or the Content-Type; the first bytes only
say which answer fits: 415 for something that is no image format at all, 422 for an image
format that does not decode (a truncated or corrupt file). An image is also capped in
pixels (--max-megapixels), read from its header before decoding (pixels.py): 413 as for too
many bytes, since the request is refused for its size and the remedy is the same (send a
smaller image), where 422 says the content itself is wrong.
"""

from __future__ import annotations

import json
import logging
import re

import cv2
import numpy as np
from starlette.requests import Request

from emotion.serve.pixels import header_size

log = logging.getLogger("emotion.serve")


class UploadError(Exception):
    """A request the server refuses: the HTTP status and the one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyTooLarge(UploadError):
    def __init__(self, limit: int):
        super().__init__(413, f"upload larger than the limit of {limit / 2**20:g} MB "
                              f"(emotion serve --max-upload-mb)")


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413 JSON answer.

    A Content-Length over the limit is refused before the body is read; otherwise the bytes
    are counted as the app receives them, and the app's read fails at the first byte over.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            log.warning("%s %s: 413 Content-Length %s is over the limit", scope.get("method"),
                        scope.get("path"), length)
            return await send_json(send, 413, BodyTooLarge(self.max_bytes))
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as err:
            if not started:
                await send_json(send, 413, err)


async def send_json(send, status: int, error: Exception) -> None:
    """A JSON `{"error": ...}` answer written straight to the ASGI `send`."""
    body = json.dumps({"error": str(error)}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def display_name(name: str | None, default: str = "upload") -> str:
    """A label for the answer from a client's file name: its last component, printable
    characters only, at most 100 of them. Never used as a path."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .")[:100]
    return name or default


async def read_upload(request: Request, field: str) -> tuple[bytes, str]:
    """(the bytes, a display name) of the upload: the multipart form's `field`, else the body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # Starlette spools file parts to an anonymous temporary file past 1 MB; the size limit
        # above has already bounded the whole body.
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get(field)
            if upload is None or isinstance(upload, str):
                raise UploadError(422, f"the form has no file field named {field!r}")
            data = await upload.read()
            name = display_name(upload.filename)
    else:
        data = await request.body()
        name = "upload"
    if not data:
        raise UploadError(422, f"the request holds no {field}: send it as the multipart field "
                               f"{field!r} or as the raw body")
    return data, name


# The first bytes of the formats OpenCV reads (what the file claims to be, not what it is).
SIGNATURES = {
    b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP", b"GIF8": "GIF",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "WebP", b"P5": "PGM", b"P6": "PPM",
}


def claimed_format(data: bytes) -> str | None:
    return next((fmt for magic, fmt in SIGNATURES.items() if data.startswith(magic)), None)


DEFAULT_MAX_PIXELS = 40_000_000  # emotion serve --max-megapixels: 40 (a 7300 x 5500 photo)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image in `data` (as stored: gray or colour, 8 or 16 bit), or UploadError: 413 for
    more than `max_pixels` (from the header when it can be read, see pixels.py, else after
    decoding), 415 for no image format, 422 for an image that does not decode (or no bytes)."""
    if not data:
        raise UploadError(422, "no bytes: an empty upload is no image")
    size = header_size(data)
    if size is not None:
        check_pixels(*size, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8),
                             cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error:  # OpenCV refuses some broken headers by raising, not by returning None
        image = None
    if image is not None and image.size:
        check_pixels(image.shape[1], image.shape[0], max_pixels)  # a header that was not read
        return image
    fmt = claimed_format(data)
    if fmt is None:
        raise UploadError(415, "not an image: the bytes are no format this server decodes "
                               "(jpg, png, bmp, tiff, webp, ...)")
    raise UploadError(422, f"a {fmt} file that does not decode: truncated or corrupt")


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """413 for an image of more than `max_pixels`: the size that costs memory and time once
    decoded, which the bytes of a well-compressed file do not bound."""
    if width * height > max_pixels:
        raise UploadError(413, f"an image of {width} x {height} pixels "
                               f"({width * height / 1e6:.1f} megapixels) is over the limit of "
                               f"{max_pixels / 1e6:g} megapixels (emotion serve --max-megapixels)")
