"""`emotion predict IMAGE_OR_DIR...`: classify every face in still images.

Prints one line per image: JSON (`--json`, one object per line) or a readable table.
`--annotate DIR` also writes a copy of each image with the boxes, labels and bars drawn
(`--show-parts`: and the eyes, eyebrows, mouth and pose axes). `--rotations` also looks for
faces rolled by up to about 30 degrees (emotion.face.rotate), at four more face searches a photo.

Each face of the JSON carries its head pose and parts: `"pose": {"yaw", "pitch", "roll"}`
in degrees (conventions: emotion.face.pose; null where unknown) and `"parts": {"eyes",
"eyebrows", "mouth", "eyebrow_raise"}` in image pixels (FaceResult.parts_dict).
An input that cannot be read is reported and skipped; the exit code is then 1, after the
other inputs have been processed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from emotion.video import pipeline
from emotion.commands import options
from emotion.errors import UserError
from emotion.io.rows import image_record
from emotion.io.outputs import add_overwrite_argument, check_output_folder, refuse_existing
from emotion.video.sources import is_url
from emotion.io.draw import draw_results
from emotion.io.images import find_images, read_image, to_bgr8
from emotion.video.sources import READABLE_VIDEO_EXTENSIONS as VIDEO_EXTENSIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                        help="image files, or folders whose images are all classified")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image (JSON lines) instead of a table")
    parser.add_argument("--annotate", metavar="DIR",
                        help="write annotated copies of the images into this folder")
    options.add_weights_option(parser)
    options.add_backend_option(parser)
    parser.add_argument("--rotations", action="store_true",
                        help="also search copies rotated by +-15 and +-30 degrees, for heads "
                        "tilted sideways (slower)")
    options.add_show_parts_option(parser)
    add_overwrite_argument(parser)


def print_table_rows(path: Path, results, out) -> None:
    if not results:
        print(f"{str(path):40s}  no face found", file=out)
    for r in results:
        x, y, w, h = r.box
        p = float(max(r.probabilities))
        print(f"{str(path):40s}  face {r.track_id:<2d} at ({x}, {y}, {w}x{h})  "
              f"{r.emotion:8s} {p:.2f} {r.intensity}", file=out)


def annotated_paths(folder: Path, paths: list[Path]) -> dict[Path, Path]:
    """Where each input's annotated copy goes: FOLDER/NAME.annotated.png, always .png
    (lossless, and every OpenCV build writes it).

    Two inputs with the same name (a/x.jpg and b/x.jpg, or x.jpg and x.png) must not write
    over each other, so a name already taken gets the input's extension, then a counter. A
    name that is one of the inputs themselves (annotating into the input folder) is skipped
    the same way: an input is never overwritten.
    """
    inputs = {p.resolve() for p in paths}
    taken: set[Path] = set()
    targets = {}
    for path in paths:
        candidates = [f"{path.stem}.annotated.png", f"{path.name}.annotated.png"]
        candidates += (f"{path.name}.{i}.annotated.png" for i in range(2, len(paths) + 2))
        for name in candidates:
            target = folder / name
            if target not in taken and target.resolve() not in inputs:
                break
        taken.add(target)
        targets[path] = target
    return targets


def run(args) -> int:
    with pipeline.one_blas_thread():
        return _run(args)


def _run(args) -> int:
    out = sys.stdout
    annotate = Path(args.annotate) if args.annotate else None
    if annotate is not None:
        # Before any image is classified: a folder we cannot write in would otherwise cost
        # the whole run and end in one OpenCV warning per image.
        check_output_folder(annotate, "--annotate")
        try:
            annotate.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create --annotate folder {annotate}: {err.strerror}") from None
    # A URL is reported as given: as a Path, "https://a/b.jpg" would read "https:/a/b.jpg".
    urls = [name for name in args.inputs if is_url(name)]
    # Each image once, even when named twice (x.jpg x.jpg, or a folder and a file in it).
    paths = list({p.resolve(): p
                  for p in find_images([n for n in args.inputs if n not in urls])}.values())
    targets = annotated_paths(annotate, paths) if annotate is not None else {}
    for target in targets.values():  # before any image is classified, as the folder's check
        refuse_existing({"--annotate": target}, args.overwrite)
    classifier = pipeline.load_classifier(args.weights, args.backend)
    detector, parts = pipeline.photo_detectors()

    failures = 0
    for url in urls:
        failures += 1
        message = (f"{url} is a URL: emotion predict reads image files; download it first "
                   "(e.g. curl -O URL)")
        print(f"emotion predict: error: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"file": url, "error": message}), file=out, flush=True)
    for path in paths:
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                raise UserError(f"{path} is a video: use `emotion video {path} --out "
                                f"annotated.mp4` (or `emotion live --source {path}`)")
            image = read_image(path)
        except UserError as err:
            failures += 1
            print(f"emotion predict: error: {err}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": str(path), "error": str(err)}), file=out, flush=True)
            continue
        results = pipeline.analyze_image(classifier, image, detector, parts,
                                         rotations=args.rotations)
        if args.json:
            print(json.dumps(image_record(path, results)), file=out, flush=True)
        else:
            print_table_rows(path, results, out)
        if annotate is not None:
            target = targets[path]
            if not cv2.imwrite(str(target), draw_results(to_bgr8(image).copy(), results,
                                                        show_parts=args.show_parts)):
                failures += 1
                print(f"emotion predict: error: could not write {target}", file=sys.stderr)
    if failures:
        print(f"emotion predict: {failures} of {len(paths) + len(urls)} inputs failed",
              file=sys.stderr)
        return 1
    return 0
