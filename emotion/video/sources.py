"""Reading video files, cameras and stream URLs, with clear errors for the user.

OpenCV reports most failures by returning None or False rather than raising, and the first
sign of trouble is then `'NoneType' object has no attribute 'shape'` three calls later.
Every OpenCV video read in the app goes through this module (still images: emotion/io/images.py),
which checks the result at once and turns it into a `UserError` naming the file or camera.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np

from emotion.errors import UserError
from emotion.io.images import to_bgr8
from emotion.io.inputs import readable_file
from emotion.io.messages import plural
from emotion.io.outputs import (check_output_file, check_outputs_spare_inputs, refuse_existing,
                                same_file)

# ---------------------------------------------------------------------------------------
# Video: files, cameras, URLs
# ---------------------------------------------------------------------------------------

@dataclass
class Frame:
    index: int         # 0, 1, 2, ... in reading order
    timestamp: float   # seconds: frame index / fps for a file, wall-clock time for a camera
    image: np.ndarray  # 8-bit BGR


def parse_source(source: str | int) -> str | int:
    """'0' -> camera index 0; 'file:///a/b.mp4' -> '/a/b.mp4' (a file, whatever it is called);
    another URL or a path stays a string."""
    if isinstance(source, int):
        return source
    text = str(source).strip()
    if text.lower().startswith("file://"):
        return unquote(urlparse(text).path)
    return int(text) if text.isdigit() else text


def is_url(source) -> bool:
    return isinstance(source, str) and "://" in source


class VideoSource:
    """A cv2.VideoCapture that has been checked to open, read frame by frame.

    `frames()` yields `Frame`s until the source ends or `max_frames` have been read.
    Afterwards `ended` says whether the source ran out of frames, `stopped_early` whether it
    was a camera or stream that stopped delivering (an error for a live source) rather than a
    file that reached its end, `reached_limit` whether `max_frames` ended it, and
    `truncation_warning()` whether a file stopped decoding well before the frame count its
    container declares; `read_seconds` holds the time spent decoding.
    """

    def __init__(self, capture, name: str, live: bool):
        self.capture = capture
        self.name = name
        self.live = live  # a camera or a URL: frames arrive in real time
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        # Webcams often report 0 and some files report nonsense; 30 is a sane default.
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not live else None
        self.frames_read = 0
        self.read_seconds = 0.0
        self.ended = False
        self.stopped_early = False
        self.reached_limit = False

    def frames(self, max_frames: int | None = None):
        start = time.monotonic()
        while True:
            if max_frames is not None and self.frames_read >= max_frames:
                self.reached_limit = True
                return
            t0 = time.perf_counter()
            ok, image = self.capture.read()
            self.read_seconds += time.perf_counter() - t0
            if not ok or image is None or image.size == 0:
                # A file is over; a camera that stops mid-stream was unplugged or taken over.
                self.ended = True
                self.stopped_early = self.live
                return
            index = self.frames_read
            timestamp = time.monotonic() - start if self.live else index / self.fps
            # Counted before the yield: a caller that stops after this frame (the user
            # pressed q) never resumes the generator, and the frame was still read.
            self.frames_read += 1
            yield Frame(index, timestamp, to_bgr8(image))

    def end_message(self) -> str:
        """Why reading stopped, for the summary line at the end of a run."""
        frames = plural(self.frames_read, "frame")
        if self.reached_limit:
            return f"stopped {self.name} at the frame limit (--max-frames), after {frames}"
        if self.stopped_early:
            return (f"{self.name} stopped returning frames after {frames} "
                    f"(disconnected, or in use by another program?)")
        return f"end of {self.name} after {frames}"

    def truncation_warning(self) -> str | None:
        """A warning when a file stopped decoding clearly before its declared frame count.

        OpenCV reports an undecodable frame exactly like the end of the file (read() returns
        False), so a truncated or corrupt video would otherwise look complete. The container's
        count is only an estimate for some formats (it may come from duration x fps), so we
        warn only when both more than a few frames and more than a few percent are missing.
        """
        # Only a file that ran out by itself: not one the caller stopped (--max-frames, q).
        if self.live or not self.ended or self.frame_count is None:
            return None
        missing = self.frame_count - self.frames_read
        if missing <= max(5, 0.02 * self.frame_count):
            return None
        return (f"{self.name} stopped at frame {self.frames_read} of the {self.frame_count} "
                f"the file declares: the next frame could not be decoded (truncated or "
                f"corrupt file?), so the results cover the first "
                f"{plural(self.frames_read, 'frame')} only")

    def release(self) -> None:
        self.capture.release()


@contextmanager
def quiet_opencv():
    """Silence OpenCV's own log while opening a capture: a camera that is not there makes it
    print a dozen WARN/ERROR lines, which our single UserError message replaces."""
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def open_video(source: str | int, opener=None) -> VideoSource:
    """Open a camera index, a video file or a stream URL; UserError if it does not open.

    `opener` defaults to cv2.VideoCapture, looked up at call time so that tests can replace
    it with a fake capture that simulates a failing camera.
    """
    opener = opener or cv2.VideoCapture
    source = parse_source(source)
    if isinstance(source, int):
        name = f"camera {source}"
        with quiet_opencv():
            capture = opener(source)
        if capture is None or not capture.isOpened():
            # Suggest a different camera than the one that just failed (0 is the usual one).
            other = 1 if source == 0 else 0
            raise UserError(f"could not open camera {source}: no such camera, no permission, "
                            f"or it is in use by another program (try another camera, e.g. "
                            f"--source {other}, or a video file: --source clip.mp4)",
                            exit_code=1)
        return VideoSource(capture, name, live=True)
    if is_url(source):
        with quiet_opencv():
            capture = opener(source)
        if capture is None or not capture.isOpened():
            raise UserError(f"could not open stream {source}: check the URL and that the "
                            f"stream is running", exit_code=1)
        return VideoSource(capture, f"stream {source}", live=True)
    path = readable_file(source, "video", regular=False)
    with quiet_opencv():
        capture = opener(str(path))
    if capture is None or not capture.isOpened():
        raise UserError(f"could not open video {path}: not a video format OpenCV can decode "
                        f"(mp4, avi, mkv, mov, ... with a codec FFmpeg knows)")
    return VideoSource(capture, f"video {path}", live=False)


def check_output_paths(outputs: dict[str, str | os.PathLike | None],
                       source: str | int | None = None, inputs: dict | None = None,
                       overwrite: bool = False, alternatives: str = "",
                       examples: dict | None = None) -> None:
    """Fail before anything is written if an output cannot be written, is the input video,
    is another output, or already exists without `overwrite` (outputs.refuse_existing, whose
    message offers `alternatives` too). `examples`: option -> the file name suggested when
    the path given is a folder (default: one that fits a video, --csv or --jsonl).

    `outputs` maps each option to its path (None when not given), e.g. {"--out": "a.mp4",
    "--csv": None}; `source` is the input as the user gave it (a camera index or a stream URL
    is not a file and cannot be overwritten). Writing an output over the input would destroy
    the video while it is being read; two outputs on one file would interleave their formats.
    """
    given = [(option, path) for option, path in outputs.items() if path]
    for option, path in given:
        check_output_file(path, option, (examples or {}).get(option))
    check_outputs_spare_inputs(outputs, inputs or {})
    source = parse_source(source) if source is not None else None
    if isinstance(source, str) and not is_url(source):
        for option, path in given:
            if same_file(path, source):
                raise UserError(f"{option} {path} is the input video {source}: writing it would "
                                f"destroy the input; give {option} another file name")
    for i, (option, path) in enumerate(given):
        for other_option, other_path in given[i + 1:]:
            if same_file(path, other_path):
                raise UserError(f"{option} {path} and {other_option} {other_path} are the same "
                                f"file: give each output its own name")
    refuse_existing(outputs, overwrite, alternatives)  # last: the messages above say more


# The video files the app reads (FFmpeg decodes more containers than OpenCV's mp4v writer
# can fill, hence two lists): `emotion batch` looks for these in folders, `emotion predict`
# sends them to `emotion video`.
READABLE_VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".mpg",
                             ".mpeg"}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")  # containers that take OpenCV's mp4v


def check_video_name(path) -> None:
    """UserError, before any output is touched, for a --out name OpenCV cannot write as mp4v
    (no extension, .webm, .gif, ...): otherwise it fails at the first frame, after --csv was
    already emptied."""
    if path and Path(path).suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserError(f"--out {path}: cannot write that kind of video; use a name ending in "
                        f"{', '.join(VIDEO_EXTENSIONS)}")


def open_writer(path: str | os.PathLike, fps: float, size: tuple[int, int]):
    """An mp4v VideoWriter for `path`; UserError if the folder is missing or it won't open."""
    path = check_output_file(path)
    # mp4v (MPEG-4 part 2) is built into every opencv-python wheel; H.264 often is not.
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise UserError(f"could not open {path} for writing as an mp4v video (use a .mp4 or "
                        f".avi name in a writable folder)")
    return writer


def count_frames(path: str | os.PathLike, decode: bool = True) -> int:
    """Frames in a video file: by decoding them all, or (decode=False) from the container.

    The container's count is instant and exact for the mp4 files OpenCV writes; decoding is
    the ground truth for any file, at the cost of a second pass over the video.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        if not decode:
            return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()
