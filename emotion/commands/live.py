"""`emotion live`: the webcam demo (or any video file / stream URL as the source).

A window shows the annotated frames when a display exists; q or Esc (or closing the window)
quits. On a machine without a display (SSH, a container, CI) it runs headless: it never
calls cv2.imshow there, because OpenCV's GUI then aborts the whole process (the Qt / GTK
backends cannot be caught as a Python exception). Results still go to --out / --jsonl, and
without those a one-line summary is printed every second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2

from emotion.video import follow, pipeline
from emotion.commands import options
from emotion.errors import UserError
from emotion.video.loop import FrameLoop
from emotion.io.messages import plural
from emotion.io.outputs import add_overwrite_argument

WINDOW = "emotion live (q or Esc to quit)"


def has_display() -> bool:
    """Whether a window can be opened. The one place that decides if cv2.imshow is called.

    On Linux (and other X11/Wayland systems) a GUI needs DISPLAY or WAYLAND_DISPLAY; macOS
    and Windows always have their window server.
    """
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="0",
                        help="camera index (default 0), video file or stream URL")
    parser.add_argument("--no-display", action="store_true",
                        help="never open a window (automatic when there is no display)")
    parser.add_argument("--out", help="also write the annotated frames to this .mp4 file")
    parser.add_argument("--jsonl", help="write one JSON line per face per frame to this file")
    parser.add_argument("--max-frames", type=options.number_type(int, 1), metavar="N",
                        help="stop after N frames")
    options.add_video_options(parser, pipeline.VIDEO_WEIGHTS, follow.DETECT_EVERY,
                              follow.CLASSIFY_EVERY)
    add_overwrite_argument(parser)


class FpsMeter:
    """Frames per second from the time between frames, smoothed so the number is readable."""

    def __init__(self, weight: float = 0.1):
        self.weight = weight
        self.fps = None
        self.last = None

    def tick(self) -> float:
        now = time.perf_counter()
        if self.last is not None and now > self.last:
            instant = 1.0 / (now - self.last)
            self.fps = instant if self.fps is None else (
                self.weight * instant + (1 - self.weight) * self.fps)
        self.last = now
        return self.fps or 0.0


def show_frame(image) -> bool:
    """Show a frame; False when the user asked to quit (q, Esc, or closed the window)."""
    cv2.imshow(WINDOW, image)
    key = cv2.waitKey(1) & 0xFF
    if key in (ord("q"), ord("Q"), 27):
        return False
    return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1


def summary_line(timestamp: float, results) -> str:
    faces = "; ".join(f"#{r.track_id} {r.emotion} {max(r.probabilities):.2f} {r.intensity} "
                      f"{r.phase}" for r in results) or "no face"
    return f"[{timestamp:7.2f} s] {faces}"


def run(args) -> int:
    with pipeline.one_blas_thread():
        return _run(args)


def _run(args) -> int:
    if not str(args.source).strip():  # as a path, "" would be the current folder
        raise UserError("--source is empty: give a camera index (0), a video file or a "
                        "stream URL")
    show = not args.no_display and has_display()
    if not args.no_display and not show:
        print("emotion live: no display (DISPLAY / WAYLAND_DISPLAY not set): running without "
              "a window", file=sys.stderr)
    loop = FrameLoop(args.source, args.weights, args.backend, detect_every=args.detect_every,
                     classify_every=args.classify_every,
                     show_parts=args.show_parts,
                     jsonl=args.jsonl, out=args.out, max_frames=args.max_frames,
                     overwrite=args.overwrite)
    quiet = bool(args.out or args.jsonl)
    quit_by_user = False
    try:
        with loop:
            meter = FpsMeter()
            next_summary = 0.0
            for frame, results in loop:
                loop.draw(frame, results, meter.tick())
                loop.write(frame.image)
                if show:
                    if not show_frame(frame.image):
                        quit_by_user = True
                        break
                elif not quiet and frame.timestamp >= next_summary:
                    print(summary_line(frame.timestamp, results), file=sys.stderr, flush=True)
                    next_summary = frame.timestamp + 1.0
    finally:
        if show:
            cv2.destroyAllWindows()

    source, faces = loop.source, loop.faces
    # Timings over zero frames would be a meaningless "0 frames = 9000 frames/s".
    if faces is not None and faces.timings.frames > 0:
        dropped = (f"; {plural(loop.dropped, 'stale camera frame')} dropped to stay current"
                   if loop.dropped else "")
        print(f"emotion live: pipeline: {loop.summary()}{dropped}", file=sys.stderr)
    if source.stopped_early and not quit_by_user:
        # A camera or stream that stops delivering is a failure, not the end of a film.
        raise UserError(source.end_message(), exit_code=1)
    if source.frames_read == 0:
        raise UserError(f"could not read any frame from {source.name}: empty or corrupt "
                        f"video", exit_code=1)
    if quit_by_user:
        print(f"emotion live: quit after {plural(loop.frames_done, 'frame')}",
              file=sys.stderr)
    else:
        print(f"emotion live: {source.end_message()}", file=sys.stderr)
    warning = source.truncation_warning()
    if warning:
        print(f"emotion live: warning: {warning}", file=sys.stderr)
    return 0
