"""Reading images, video files, cameras and stream URLs, with clear errors for the user.

OpenCV reports most failures by returning None or False rather than raising, and the first
sign of trouble is then `'NoneType' object has no attribute 'shape'` three calls later.
Every OpenCV read in the app goes through this module, which checks the result at once and
turns it into a `UserError` naming the file or camera.
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
from emotion.outputs import check_output_file, same_file

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm",
                    ".pbm", ".jp2", ".exr", ".hdr"}


# ---------------------------------------------------------------------------------------
# Pixel formats: everything the app draws on is 8-bit BGR, everything it detects on is
# 8-bit gray. Files and callers may give us gray, BGRA, 16-bit or float images.
# ---------------------------------------------------------------------------------------

def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a 16-bit or float image to uint8 (uint8 passes through untouched)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # Full 16-bit range -> 8 bits by dropping the low byte (65535 -> 255).
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        # Float images (EXR, HDR, or arrays from other code) are taken as [0, 1].
        return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any gray / BGR / BGRA image of any depth as 8-bit, 3-channel BGR."""
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def to_gray8(image: np.ndarray) -> np.ndarray:
    """Any gray / BGR / BGRA image of any depth as 8-bit gray (what the detectors want)."""
    image = to_uint8(image)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as it is stored (gray or colour, 8 or 16 bit); UserError if we can't.

    We decode from bytes with cv2.imdecode rather than cv2.imread: it reads non-ASCII paths
    on every OS, and a failure is ours to report instead of an OpenCV warning on stderr.
    ANYDEPTH keeps 16-bit data, ANYCOLOR keeps gray as gray, and unlike IMREAD_UNCHANGED both
    still apply the EXIF orientation of phone photos. (An alpha channel is dropped: faces
    are found on the colour channels alone.)
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"image not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UserError(f"could not read image {path}: {err.strerror or err}") from None
    image = None
    if data.size:
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None or image.size == 0:
        raise UserError(f"could not read image {path}: empty, corrupt or not an image format "
                        f"OpenCV supports (jpg, png, bmp, tiff, webp, ...)")
    return image


def find_images(inputs: list[str]) -> list[Path]:
    """Expand folders (non-recursively, sorted) into their image files; keep files as given.

    A folder's *.annotated.png files are left out: they are `emotion predict --annotate`'s own
    copies, which a second run into the same folder would otherwise annotate again. Paths that
    do not exist are kept too, so the caller reports each of them by name.
    """
    paths: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not p.name.endswith(".annotated.png"))
            if not found:
                raise UserError(f"no image files in folder {path} "
                                f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


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


def plural(count: int, noun: str) -> str:
    """'1 frame', '2 frames'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


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
    path = Path(source)
    if not path.exists():
        raise UserError(f"video not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a video file")
    with quiet_opencv():
        capture = opener(str(path))
    if capture is None or not capture.isOpened():
        raise UserError(f"could not open video {path}: not a video format OpenCV can decode "
                        f"(mp4, avi, mkv, mov, ... with a codec FFmpeg knows)")
    return VideoSource(capture, f"video {path}", live=False)


def check_output_paths(outputs: dict[str, str | os.PathLike | None],
                       source: str | int | None = None) -> None:
    """Fail before anything is written if an output cannot be written, is the input video,
    or is another output.

    `outputs` maps each option to its path (None when not given), e.g. {"--out": "a.mp4",
    "--csv": None}; `source` is the input as the user gave it (a camera index or a stream URL
    is not a file and cannot be overwritten). Writing an output over the input would destroy
    the video while it is being read; two outputs on one file would interleave their formats.
    """
    given = [(option, path) for option, path in outputs.items() if path]
    for option, path in given:
        check_output_file(path, option)
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
