"""`emotion explain IMAGE`: one figure that shows what the CNN sees and why it decides.

The figure and the work behind it are emotion/cnn/explain.py; this is the command.
"""

from __future__ import annotations

import numpy as np

from emotion.cnn.explain import explain_image, figure_path, pose_text
from emotion.commands.options import add_backend_option, add_weights_option
from emotion.io.messages import plural
from emotion.io.outputs import add_overwrite_argument
from emotion.labels import EMOTIONS


def add_arguments(parser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="a photo with a face (or a face crop)")
    parser.add_argument("--out", default="explain.png",
                        help="the figure to write (PNG; default: explain.png in the current "
                        "folder)")
    add_weights_option(parser)
    parser.add_argument("--emotion", choices=EMOTIONS,
                        help="explain the score of this class (default: the predicted one)")
    add_backend_option(parser)
    add_overwrite_argument(parser)


def run(args) -> int:
    ex, titles = explain_image(args.image, args.out, args.weights, args.emotion, args.backend,
                               overwrite=args.overwrite)
    best = int(np.argmax(ex.probabilities))
    if ex.box is None:
        face = "no face found, used the image centre"
    elif ex.faces_found > 1:
        face = f"the largest of {ex.faces_found} faces, at {ex.box}"
    else:
        face = f"face at {ex.box}"
    if ex.pose is not None:
        p = ex.parts
        face += (f"; pose {pose_text(ex.pose)}; parts: {plural(len(p.eyes), 'eye')}, "
                 f"{plural(sum(b is not None for b in p.eyebrows), 'eyebrow')}, "
                 f"{'a' if p.mouth is not None else 'no'} mouth")
    print(f"{args.image}: {face}; {EMOTIONS[best]} ({ex.probabilities[best]:.2f}); "
          f"wrote {figure_path(args.out)} ({len(titles)} panels)")
    return 0
