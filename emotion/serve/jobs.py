"""Video jobs: `POST /api/video` -> a job id; `GET /api/jobs/{id}` -> its progress and outputs.

A job runs the loop of `emotion video` (emotion.video.loop.FrameLoop: decode, detect, track,
classify, the per-face rows written by rows.RowWriter) on a thread of its own, one job
at a time, and draws each frame as `emotion video --out` does. Where `emotion video` writes
an mp4v file, a job writes VP8 WebM: both codecs come with every opencv-python wheel, and a
browser plays only the second. VP8 is slow to encode (~50 ms for a 596x336 frame on the
2-core machine, more than detecting and classifying it), so, as `emotion video --out`
does, the frames are encoded on a writer thread of their own (loop.FrameWriter) while
the next ones are analysed.

The server's inference runs with one OpenBLAS thread (emotion serve's run does that for
the whole process, as the other commands do): with the default threads classifying the
faces of a frame was 10 times slower on 2 cores, the idle BLAS workers spinning on the
core that the face detector needs.

Every job lives in a folder of its own inside one private temporary folder
(tempfile.mkdtemp: mode 0700, a random name) made when the server starts. Nothing a client
sends becomes a path: the upload is stored as "input" + one of a fixed list of extensions,
the job id is made here, and the outputs are served by id and a fixed name only (OUTPUTS).
A finished job and its files are removed `ttl` seconds later, and the whole folder at
shutdown.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from emotion.errors import UserError
from emotion.video.loop import FrameLoop, FrameWriter
from emotion.video.sources import quiet_opencv
from emotion.serve.uploads import UploadError
from emotion.serve.worker import Busy

log = logging.getLogger("emotion.serve")

# The files a finished job serves: fixed names -> their media types.
VIDEO, CSV, JSONL = "annotated.webm", "faces.csv", "faces.jsonl"
OUTPUTS = {VIDEO: "video/webm", CSV: "text/csv", JSONL: "application/x-ndjson"}
INPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


class Cancelled(Exception):
    """The server is shutting down: the job stops at the next frame."""


@dataclass
class Job:
    id: str
    folder: Path
    status: str = "queued"          # queued -> running -> done | error
    frames: int = 0                  # frames processed so far
    total: int | None = None         # frames the container declares (None: unknown)
    tracks: int = 0
    rows: int = 0
    error: str | None = None
    finished: float | None = None    # time.monotonic() when it ended
    created: float = field(default_factory=time.monotonic)

    def to_json(self, ttl: float) -> dict:
        progress = 1.0 if self.status == "done" else (
            min(1.0, self.frames / self.total) if self.total else None)
        answer = {"id": self.id, "status": self.status, "frames": self.frames,
                  "total": self.total, "progress": progress, "tracks": self.tracks,
                  "rows": self.rows, "error": self.error}
        if self.finished is not None:
            answer["expires_in_s"] = round(max(0.0, self.finished + ttl - time.monotonic()))
        if self.status == "done":
            answer["outputs"] = {name.split(".")[-1] if name != VIDEO else "video":
                                 f"/api/jobs/{self.id}/{name}" for name in OUTPUTS}
        return answer


class JobStore:
    """The jobs of one server; see the module docstring."""

    def __init__(self, classifier, root: str | Path | None = None, ttl: float = 3600.0,
                 max_waiting: int = 4):
        self.classifier, self.ttl, self.max_waiting = classifier, ttl, max_waiting
        self.root = Path(tempfile.mkdtemp(prefix="emotion-serve-", dir=root))
        self.jobs: dict[str, Job] = {}
        self.closing = threading.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-job")

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def output(self, job_id: str, name: str) -> tuple[Path, str] | None:
        """(path, media type) of a finished job's output, or None."""
        job = self.jobs.get(job_id)
        if job is None or job.status != "done" or name not in OUTPUTS:
            return None
        return job.folder / name, OUTPUTS[name]  # `name` is one of OUTPUTS' own keys

    def create(self, data: bytes, display_name: str) -> Job:
        """Store the upload, check it is a video (UploadError 415) and queue the job (Busy
        when `max_waiting` jobs are queued or running). Blocking: call it off the loop."""
        self.expire()
        waiting = sum(job.status in ("queued", "running") for job in self.jobs.values())
        if waiting >= self.max_waiting:
            raise Busy(f"{waiting} video jobs are queued or running: try again later")
        job_id = secrets.token_hex(8)
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        suffix = next((s for s in INPUT_SUFFIXES if display_name.lower().endswith(s)), ".mp4")
        source = folder / f"input{suffix}"
        source.write_bytes(data)
        if not is_video(source):
            shutil.rmtree(folder, ignore_errors=True)
            raise UploadError(415, "not a video: no frame could be decoded from the upload "
                                   "(mp4, webm, mkv, mov, avi with a codec FFmpeg knows)")
        job = Job(job_id, folder)
        self.jobs[job_id] = job
        self.executor.submit(self._run, job, source)
        return job

    def _run(self, job: Job, source: Path) -> None:
        job.status = "running"
        writer = None
        try:
            with FrameLoop(str(source), classifier=self.classifier, csv=str(job.folder / CSV),
                           jsonl=str(job.folder / JSONL)) as loop:
                job.total = loop.source.frame_count
                for frame, results in loop:
                    if self.closing.is_set():
                        raise Cancelled
                    image = loop.draw(frame, results)
                    if writer is None:
                        h, w = image.shape[:2]
                        writer = FrameWriter(job.folder / VIDEO, loop.source.fps, (w, h),
                                             opener=open_webm)
                    writer.write(image)
                    job.frames, job.rows = loop.frames_done, loop.rows.rows
                    job.tracks = len(loop.track_ids)
            if job.frames == 0:
                raise UserError("the video has no frame that decodes")
            writer, finishing = None, writer
            finishing.close()  # the last frames encoded; the job is done once the file is
            job.status = "done"
        except Cancelled:
            job.status, job.error = "error", "the server shut down"
        except UserError as err:
            job.status, job.error = "error", str(err)
        except Exception as err:  # noqa: BLE001 - one line in the log, the job says what
            log.error("video job %s: %s: %s", job.id, type(err).__name__, err)
            job.status, job.error = "error", f"internal error: {type(err).__name__}: {err}"
        finally:
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the job has already failed for a reason
                    pass
            source.unlink(missing_ok=True)  # the upload is not needed any more
            job.finished = time.monotonic()

    def expire(self) -> int:
        """Remove the jobs that ended more than `ttl` seconds ago; returns how many."""
        now = time.monotonic()
        old = [job for job in self.jobs.values()
               if job.finished is not None and now - job.finished > self.ttl]
        for job in old:
            del self.jobs[job.id]
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(old)

    def close(self) -> None:
        """Stop a running job, drop the queued ones and remove every file."""
        self.closing.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)


def is_video(path: Path) -> bool:
    with quiet_opencv():  # garbage makes FFmpeg print a screenful; our 415 says it
        capture = cv2.VideoCapture(str(path))
    try:
        ok, image = capture.read() if capture.isOpened() else (False, None)
        return bool(ok) and image is not None and image.size > 0
    finally:
        capture.release()


def open_webm(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), fps, size)
    if not writer.isOpened():
        raise UserError("this OpenCV cannot write VP8 WebM video (the opencv-python wheels can)")
    return writer
