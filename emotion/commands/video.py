"""`emotion video INPUT --out annotated.mp4 [--csv F | --jsonl F]`: annotate a whole video.

Every input frame is written to the output video, with or without faces, so the output
has the input's length and frame rate. The optional table has one row per face per frame
(the columns: emotion/io/rows.py). The loop itself is emotion/video/loop.py; this command adds
the progress bar and the check that every frame was written.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from emotion.video import follow, pipeline
from emotion.commands import options
from emotion.errors import UserError
from emotion.video.loop import FrameLoop
from emotion.io.messages import plural
from emotion.io.outputs import add_overwrite_argument
from emotion.video.sources import count_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video file (or stream URL) to annotate")
    parser.add_argument("--out", help="annotated video to write (.mp4, mp4v codec)")
    parser.add_argument("--csv", help="write one row per face per frame to this CSV file")
    parser.add_argument("--jsonl", help="write the same rows as JSON lines to this file")
    options.add_video_options(parser, pipeline.VIDEO_WEIGHTS, follow.DETECT_EVERY,
                              follow.CLASSIFY_EVERY)
    add_overwrite_argument(parser)


def run(args) -> int:
    with pipeline.one_blas_thread():
        return _run(args)


def _run(args) -> int:
    if not (args.out or args.csv or args.jsonl):
        raise UserError("nothing to write: give --out VIDEO and/or --csv FILE / --jsonl FILE")
    loop = FrameLoop(args.input, args.weights, args.backend, detect_every=args.detect_every,
                     classify_every=args.classify_every,
                     show_parts=args.show_parts,
                     csv=args.csv, jsonl=args.jsonl, out=args.out, overwrite=args.overwrite)
    with loop:
        progress = tqdm(total=loop.source.frame_count, unit="frame", desc="emotion video",
                        file=sys.stderr, dynamic_ncols=True)
        with progress:
            for frame, results in loop:
                if args.out:
                    loop.write(loop.draw(frame, results))
                progress.update(1)
    source = loop.source
    if source.frames_read == 0:
        raise UserError(f"could not read any frame from {args.input}: empty or corrupt video")
    print(f"{source.end_message()}; {plural(len(loop.track_ids), 'face track')}, "
          f"{plural(loop.rows.rows, 'row')}", file=sys.stderr)
    print(f"pipeline: {loop.summary()}", file=sys.stderr)
    if args.out:
        written = count_frames(args.out, decode=False)
        if written != source.frames_read:
            raise UserError(f"{args.out} has {written} frames but {source.frames_read} were "
                            f"read: the video writer dropped frames", exit_code=1)
        print(f"wrote {args.out} ({plural(written, 'frame')})", file=sys.stderr)
    # Last, so that it is the line the user sees. What was written is valid, hence exit 0.
    warning = source.truncation_warning()
    if warning:
        print(f"emotion video: warning: {warning}", file=sys.stderr)
    if source.stopped_early:  # a stream URL that broke off
        return 1
    return 0
