"""`emotion batch INPUT... --out results.parquet`: the options, the checks, and the run.

The order matters for "nothing lost": every check that can fail (inputs, output paths,
weights, backend, a parts folder from another run) runs before any file is analysed; then
each file's result is written as its part as soon as it arrives; the table is joined last.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from contextlib import contextmanager

from tqdm import tqdm

from emotion.video import follow, pipeline
from emotion.batch import cluster
from emotion.batch.analyze import BatchSettings, columns
from emotion.batch.media import find_media
from emotion.batch.part_store import PartStore, parts_folder
from emotion.errors import UserError
from emotion.io.messages import plural
from emotion.cnn.classifier import choose_backend
from emotion.commands import options
from emotion.commands.options import number_type
from emotion.io.outputs import add_overwrite_argument, check_outputs_spare_inputs
from emotion.video.sources import check_output_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image and video files, and folders (searched recursively)")
    parser.add_argument("--out", required=True,
                        help="the table to write (Parquet), e.g. results.parquet; each file's "
                        "result is first written to OUT.parts/ as it completes, and kept there "
                        "for --resume")
    parser.add_argument("--csv", help="also write the table as CSV to this file")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run on this existing Dask cluster instead of one on this machine")
    parser.add_argument("--workers", type=number_type(int, 0), metavar="N",
                        help=f"worker processes of the cluster on this machine (default: one per "
                        f"core, {cluster.cores()} here); 0 analyses the files one by one in "
                        "this process")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run with the same --out: skip the files already done, "
                        "retry the ones that failed")
    add_overwrite_argument(parser)
    options.add_weights_option(parser, when_omitted="'default' for images, as `emotion "
                               f"predict`; {pipeline.VIDEO_WEIGHTS!r} for videos, as `emotion "
                               "video`; the same for all files")
    options.add_backend_option(parser, when_omitted="numba if it runs here, else numpy; every "
                               "worker uses the same")
    options.add_frame_options(parser, follow.DETECT_EVERY, follow.CLASSIFY_EVERY,
                              where="in videos, as `emotion video`: ")
    parser.add_argument("--max-frames", type=number_type(int, 1), metavar="N",
                        help="analyse at most the first N frames of each video")
    parser.add_argument("--connect-timeout", type=number_type(float, 0, low_open=True),
                        default=10.0, metavar="S",
                        help="seconds to wait for --scheduler to answer (default 10)")


def run(args) -> int:
    if args.scheduler and args.workers is not None:
        raise UserError("--workers sizes the cluster this command starts on this machine; with "
                        "--scheduler the cluster's own workers are used: leave out one of them")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run of --out and --overwrite replaces it: "
                        "pass only one of them")
    files = find_media(args.inputs)
    settings, weight_files = _settings(args)
    for media in files:
        check_outputs_spare_inputs({"--out": args.out, "--csv": args.csv},
                                   {"the input": media.path})
    # The one output policy (outputs.refuse_existing): existing tables are replaced only with
    # --overwrite, or by a --resume that continues the run that wrote them. A --resume with
    # nothing to resume is a fresh run, and refuses them as one.
    resuming = args.resume and PartStore.holds_run(args.out)
    if resuming or not args.resume:
        offer = "pass --resume to continue that run (the files already done are skipped), "
    else:
        offer = f"there is no run to resume ({parts_folder(args.out)} holds none); "
    check_output_paths({"--out": args.out, "--csv": args.csv}, inputs=weight_files,
                       overwrite=args.overwrite or resuming, alternatives=offer,
                       examples={"--out": "results.parquet"})
    store = PartStore.open(args.out, args.csv, _manifest(settings, weight_files), args.resume,
                           overwrite=args.overwrite)
    todo = [m for m in files if not store.done(m.key)]

    start = time.perf_counter()
    frames = failures = 0
    with _results(args, todo, settings) as results:
        progress = tqdm(total=len(files), initial=len(files) - len(todo), unit="file",
                        desc="emotion batch", file=sys.stderr, dynamic_ncols=True)
        with progress:
            for media, result in results:
                store.write(result)  # first: whatever happens next, this file is done
                frames += result.frames
                if result.error is not None:
                    failures += 1
                    progress.write(f"emotion batch: error: {_naming(result.error, media)}",
                                   file=sys.stderr)
                progress.update(1)
                progress.set_postfix_str(plural(frames, "frame"), refresh=False)
    seconds = time.perf_counter() - start

    rows = store.join(files, args.out, args.csv)
    skipped = len(files) - len(todo)
    done = []
    if todo:
        done.append(f"{plural(len(todo), 'file')} analysed in {seconds:.1f} s "
                    f"({len(todo) / seconds:.2f} files/s, {frames / seconds:.1f} frames/s)")
    if skipped:
        done.append(f"{plural(skipped, 'file')} done before, skipped")
    print(f"emotion batch: {'; '.join(done)}; wrote {args.out}"
          f"{f' and {args.csv}' if args.csv else ''} ({plural(rows, 'row')}); parts kept in "
          f"{store.folder} for --resume", file=sys.stderr)
    if failures:
        print(f"emotion batch: {failures} of {plural(len(todo), 'file')} failed (their error "
              f"rows are in the table; --resume retries them)", file=sys.stderr)
        return 1
    return 0


def _naming(error: str, media) -> str:
    """The error as one line that names the file (most messages name it already)."""
    error = " ".join(error.split())
    return error if media.name in error or media.path in error else f"{media.name}: {error}"


def _settings(args) -> tuple[BatchSettings, dict]:
    """The settings every worker gets, checked here (the weights load, the backend runs), and
    the weight files as inputs that no output may overwrite."""
    from emotion.cnn.classifier import resolve_weights, shipped_weights_path

    backend = choose_backend(args.backend)
    weights, weight_files = {}, {}
    for kind, default in (("image", "default"), ("video", pipeline.VIDEO_WEIGHTS)):
        name = args.weights or default
        pipeline.load_classifier(name, backend)  # a missing or broken file: one error, now
        path = resolve_weights(name)
        shipped = path == shipped_weights_path(str(name))
        # A shipped name stays a name (each worker has its own install); a file is sent as an
        # absolute path, as the workers' working folders are not ours.
        weights[kind] = str(name) if shipped else str(path.resolve())
        weight_files[f"the {kind} weight file"] = path
    settings = BatchSettings(weights["image"], weights["video"], backend,
                             detect_every=args.detect_every,
                             classify_every=args.classify_every, max_frames=args.max_frames)
    return settings, weight_files


def _manifest(settings: BatchSettings, weight_files: dict) -> dict:
    """What decides the rows, so that --resume refuses to mix parts made differently; the
    weights by content, since retraining often writes a new best.npz at the same path."""
    digests = {what: hashlib.sha256(path.read_bytes()).hexdigest()[:16]
               for what, path in weight_files.items()}
    return {"columns": columns(), **vars(settings), "weights sha256": digests}


@contextmanager
def _results(args, todo: list, settings: BatchSettings):
    """The (media, result) pairs from this process (--workers 0) or the cluster, which is
    started (or joined) here and closed on leaving."""
    if not todo:
        yield iter(())
    elif args.workers == 0:
        yield cluster.in_process(todo, settings)
    else:
        workers = min(args.workers or cluster.cores(), len(todo))
        with cluster.dask_client(args.scheduler, workers, args.connect_timeout) as client:
            yield cluster.on_cluster(client, todo, settings)
