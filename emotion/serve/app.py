"""The web app of `emotion serve`: the routes, and `create_app`, which wires them to one model.

    GET  /                  the page (emotion/serve/static: HTML, CSS, JavaScript modules)
    GET  /api/health        {"status": "ok", "model": ..., "backend": ..., "busy": n}
    POST /api/predict       an image (multipart field "image", or the raw body) -> one
                            `emotion predict --json` record (emotion.io.rows.image_record)
    POST /api/explain       an image -> what the network sees (emotion/serve/inside.py)
    WS   /api/live          JPEG frames in, their faces out (emotion/serve/camera.py)
    POST /api/video         a video (field "video", or the raw body) -> {"id": ...}
    GET  /api/jobs/{id}     its progress; when done, links to its outputs (emotion/serve/jobs.py)
    GET  /api/jobs/{id}/{name}   one of those outputs

Starlette, not FastAPI: nine routes that take bytes and return JSON need no request
models, validation layer or generated OpenAPI page, which is what FastAPI adds on top of
Starlette (with pydantic). Starlette is the part doing the work either way: the routing,
the WebSocket, the multipart parser, the static files, the test client.

Errors are answers, not tracebacks: a refused request gets its status and
`{"error": "..."}`, and the log gets one line; that holds for Starlette's own refusals too
(404, 405, a malformed multipart body: the HTTPException handler below), and a client that
goes away mid-upload is one line at INFO, not a 500. Who may send requests at all, and the
headers every answer carries: emotion/serve/guard.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from emotion.video import pipeline
from emotion.errors import UserError
from emotion.io.rows import image_record
from emotion.serve import inside
from emotion.serve.guard import HostAndOrigin, SecurityHeaders
from emotion.serve.jobs import JobStore
from emotion.serve.camera import IDLE_TIMEOUT, serve_live
from emotion.serve.uploads import (DEFAULT_MAX_PIXELS, BodyLimit, UploadError, decode_image,
                                   read_upload)
from emotion.serve.worker import Busy, InferenceWorker, SharedClassifier

log = logging.getLogger("emotion.serve")

STATIC = Path(str(resources.files("emotion") / "serve" / "static"))
EXPIRE_EVERY = 60.0  # seconds between sweeps for expired video jobs


BUSY_LOG_EVERY = 5.0  # seconds: a flood of 503s is one log line per period, not one each
_busy = {"last": 0.0, "quiet": 0}


def error(status: int, message: str, request: Request | None = None, **headers) -> JSONResponse:
    where = f"{request.method} {request.url.path}: " if request is not None else ""
    now = time.monotonic()
    if status != 503 or now - _busy["last"] >= BUSY_LOG_EVERY:
        more = f" (and {_busy['quiet']} more 503s since the last)" if status == 503 and _busy["quiet"] else ""
        log.warning("%s%d %s%s", where, status, message, more)
        if status == 503:
            _busy.update(last=now, quiet=0)
    else:
        _busy["quiet"] += 1
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class OneLineErrors:
    """ASGI middleware: an exception a route did not expect becomes a 500 JSON answer and
    one log line (Starlette's own handler would let the server print a traceback)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:  # nobody is left to answer, and nothing went wrong here
            log.info("%s %s: the client went away before its request was read whole",
                     scope.get("method"), scope.get("path"))
        except Exception as err:  # noqa: BLE001 - the point of this middleware
            if isinstance(err, UploadError):  # e.g. BodyTooLarge: BodyLimit answers it
                raise
            log.error("%s %s: 500 %s: %s", scope.get("method"), scope.get("path"),
                      type(err).__name__, err)
            if not started:
                await JSONResponse({"error": f"internal error: {type(err).__name__}"},
                                   status_code=500)(scope, receive, send)


def create_app(classifier=None, weights=None, backend=None, max_upload_mb: float = 20,
               job_dir=None, max_pending: int = 8, job_ttl: float = 3600.0,
               host: str = "127.0.0.1", max_pixels: int = DEFAULT_MAX_PIXELS,
               idle_timeout: float = IDLE_TIMEOUT) -> Starlette:
    """The app. `classifier`: anything with EmotionClassifier's `predict_faces` (the tests
    pass a fake one); None loads `weights` (default: the mobile_face weights `live` uses) on
    `backend`. A weight file that does not load is a UserError here, before any serving.
    `host`: the address it listens on, which decides the Host names it answers (guard.py)."""
    if classifier is None:
        classifier = pipeline.load_classifier(weights or pipeline.VIDEO_WEIGHTS, backend)
    model = SharedClassifier(classifier)
    landmarker = model if getattr(classifier, "has_geometry", False) else SharedClassifier(
        pipeline.load_landmarker(None, backend))
    worker = InferenceWorker(max_pending)
    detector, parts = pipeline.photo_detectors()
    state: dict = {"jobs": None, "live": set()}

    def jobs() -> JobStore:
        if state["jobs"] is None:  # made on first use when the app runs without lifespan
            state["jobs"] = JobStore(model, job_dir, ttl=job_ttl)
        return state["jobs"]

    def predict(data: bytes, name: str) -> dict:
        image = decode_image(data, max_pixels)
        return image_record(name, pipeline.analyze_image(model, image, detector, parts,
                                                         landmarker=landmarker))

    def explain(data: bytes) -> dict:
        return inside.explain_json(decode_image(data, max_pixels), model, landmarker)

    async def inference(request: Request, fn, field: str):
        try:
            data, name = await read_upload(request, field)
            args = (data, name) if fn is predict else (data,)
            return JSONResponse(await worker.run(fn, *args))
        except UploadError as err:
            return error(err.status, str(err), request)
        except UserError as err:  # e.g. explain on a model that is not a Sequential
            return error(422, str(err), request)
        except Busy as err:
            return error(503, str(err), request, **{"Retry-After": "1"})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                       "media-src 'self' blob:; connect-src 'self'"})  # + guard.SecurityHeaders'

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": getattr(classifier, "model_name", "?"),
                             "labels": getattr(classifier, "labels", "fer2013"),
                             "backend": _backend(), "busy": worker.pending,
                             "live_sessions": len(state["live"])})

    async def predict_route(request: Request) -> Response:
        return await inference(request, predict, "image")

    async def explain_route(request: Request) -> Response:
        return await inference(request, explain, "image")

    async def video_route(request: Request) -> Response:
        try:
            data, name = await read_upload(request, "video")
            job = await asyncio.to_thread(jobs().create, data, name)
        except UploadError as err:
            return error(err.status, str(err), request)
        except Busy as err:
            return error(503, str(err), request, **{"Retry-After": "10"})
        return JSONResponse(job.to_json(job_ttl), status_code=202)

    async def job_route(request: Request) -> Response:
        job = jobs().get(request.path_params["job_id"])
        if job is None:
            return error(404, "no such job (or it expired)", request)
        return JSONResponse(job.to_json(job_ttl))

    async def job_file(request: Request) -> Response:
        found = jobs().output(request.path_params["job_id"], request.path_params["name"])
        if found is None:
            return error(404, "no such output (unknown job or name, or the job is not done)",
                         request)
        path, media_type = found
        disposition = "inline" if media_type.startswith("video/") else "attachment"
        return FileResponse(path, media_type=media_type,
                            headers={"Content-Disposition": f'{disposition}; filename="{path.name}"'})

    async def live(websocket) -> None:
        await serve_live(websocket, model, worker, state["live"], idle_timeout, max_pixels,
                         landmarker)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        """Starlette's own refusals (no such route, a method the route does not take, a
        multipart body that does not parse) as JSON, like every other error here."""
        message = {404: f"no such page or API route: {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path} "
                        f"(allowed: {(exc.headers or {}).get('Allow', '?')})"
                   }.get(exc.status_code, exc.detail)
        return error(exc.status_code, message, request, **(exc.headers or {}))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        jobs()

        async def sweep():
            while True:
                await asyncio.sleep(EXPIRE_EVERY)
                jobs().expire()

        sweeper = asyncio.create_task(sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.to_thread(shutdown)

    def shutdown():
        if state["jobs"] is not None:
            state["jobs"].close()
        worker.close()

    routes = [
        Route("/", index),
        Route("/api/health", health),
        Route("/api/predict", predict_route, methods=["POST"]),
        Route("/api/explain", explain_route, methods=["POST"]),
        Route("/api/video", video_route, methods=["POST"]),
        Route("/api/jobs/{job_id}", job_route),
        Route("/api/jobs/{job_id}/{name}", job_file),
        WebSocketRoute("/api/live", live),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(HostAndOrigin, host=host),
                  Middleware(BodyLimit, max_bytes=int(max_upload_mb * 2**20)),
                  Middleware(OneLineErrors)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error})
    app.state.jobs, app.state.worker, app.state.shutdown = jobs, worker, shutdown
    return app


def _backend() -> str:
    import nnlite

    return nnlite.current()
