"""Command-line options that several commands share, each declared once, with one validator.

    number_type(int, 1)     an argparse `type` that also checks a range ("must be >= 1, got 0"):
                            every number an option takes is checked by it
    add_weights_option      --weights (a file or a shipped name; resolve_weights checks it)
    add_backend_option      --backend (a backend's name; choose_backend checks it runs here)
    add_frame_options       --detect-every and --classify-every of the video front ends
    add_show_parts_option   --show-parts
    RANGES, check_config    the allowed range of each training setting, for argparse and for a
                            config written in Python (which never passes through argparse)

Inference commands (predict, evaluate, live, video, explain) import this module, never the
training loop: a model is trained in one place and used in many.
"""

import argparse

import numpy as np

from emotion.errors import UserError


def number_type(kind, low=None, high=None, *, low_open=False, high_open=False):
    """An argparse `type`: parses an int or float and checks that it lies in the range.

    For example `number_type(float, 0, 1, high_open=True)` accepts "0" and "0.5" but not "1"
    or "-0.1": the range 0 <= value < 1 of --momentum.

    low/high bound it (None: no bound); *_open excludes the bound itself. A value outside
    gives argparse's usage error ("argument --lr: must be > 0, got -1") and exit 2 before any
    data is loaded, instead of a ZeroDivisionError, or a silent nonsense run, much later.
    """
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    noun = "an integer" if kind is int else "a number"
    wanted = f"{noun} {' and '.join(bounds)}".strip()

    def parse(value):
        if isinstance(value, str):
            try:
                number = kind(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {wanted}, got {value!r}") from None
        elif kind is int and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value!r}")
        else:  # a value from a Python config, already a number
            number = kind(value)
        too_low = low is not None and (number <= low if low_open else number < low)
        too_high = high is not None and (number >= high if high_open else number > high)
        if too_low or too_high or number != number or number in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return number

    parse.__name__ = kind.__name__  # what argparse names in its own messages
    return parse


positive_int = number_type(int, 1)
# The allowed range of every numeric training setting: the argparse types of `emotion train`,
# and again check_config for a config written in Python.
RANGES = {
    "epochs": positive_int,
    "batch_size": positive_int,
    "lr": number_type(float, 0, low_open=True),
    "momentum": number_type(float, 0, 1, high_open=True),
    "weight_decay": number_type(float, 0),
    "warmup": number_type(int, 0),
    "label_smoothing": number_type(float, 0, 1, high_open=True),
    "early_stopping": number_type(int, 0),
    "seed": number_type(int, 0),  # NumPy's generators take no negative seed
    "limit": number_type(int, 0),
    "temperature": number_type(float, 0, low_open=True),
    "distill_weight": number_type(float, 0, 1),
    "geometry_weight": number_type(float, 0, 100),
    "presence_weight": number_type(float, 0, 100),
}


def check_config(config) -> None:
    """UserError naming the first setting of `config` outside its range (see RANGES)."""
    for name, parse in RANGES.items():
        if config.get(name) is not None:
            try:
                parse(config[name])
            except argparse.ArgumentTypeError as err:
                raise UserError(f"{name} {err}") from None
    warmup, epochs = config.get("warmup"), config.get("epochs")
    if warmup and epochs and warmup > epochs:
        raise UserError(f"--warmup {warmup} is longer than the run (--epochs {epochs}): the "
                        "learning rate would never reach its peak; use --warmup "
                        f"{max(1, epochs // 10)} or fewer")


# -- the model: --weights and --backend --------------------------------------------------------
SHIPPED = ("'default' (the most accurate), 'compact' or 'mobile_face' (the fastest, with "
           "landmarks), trained on FER+'s labels, or 'default_fer2013', 'compact_fer2013' or "
           "'mobile_fer2013', trained on FER2013's; see the README")


def add_weights_option(parser, default=None, when_omitted="'default'") -> None:
    """--weights: a weight file or a shipped model's name. Checked where it is read
    (emotion.cnn.classifier.resolve_weights), before any work."""
    parser.add_argument("--weights", default=default, metavar="W",
                        help=f"weight file, or a shipped model name: {SHIPPED} "
                        f"(when omitted: {when_omitted})")


def add_backend_option(parser, when_omitted="numba if it runs here, else numpy") -> None:
    """--backend: an nnlite backend's name. Checked, with the reason a backend cannot run here,
    by emotion.cnn.classifier.choose_backend, which also reads $NNLITE_BACKEND."""
    parser.add_argument("--backend", default=None, metavar="B",
                        help=f"nnlite backend: numpy, numba or cuda (when omitted: "
                        f"$NNLITE_BACKEND, else {when_omitted})")


# -- the video front ends ----------------------------------------------------------------------
def add_frame_options(parser, detect_every: int, classify_every: int, where: str = "") -> None:
    """--detect-every and --classify-every (live, video, batch); `where` prefixes the help."""
    parser.add_argument("--detect-every", type=number_type(int, 1), default=detect_every,
                        metavar="K",
                        help=f"{where}scan the whole frame for new faces every K-th frame "
                        f"(default {detect_every}); in between, each face is followed by its own "
                        "landmarks. Faces of 5%% of the frame's short side and larger are found")
    parser.add_argument("--classify-every", type=number_type(int, 1), default=classify_every,
                        metavar="K",
                        help=f"{where}with weights other than the landmark model's, classify each "
                        f"face every K-th frame (default {classify_every}: half of the faces each "
                        "frame; the probabilities are smoothed over 0.2 s either way); 1 "
                        "classifies every face on every frame. The landmark model reads the "
                        "emotion in the pass that follows the face, on every frame")


def add_video_options(parser, weights: str, detect_every: int, classify_every: int) -> None:
    """What `live` and `video` share: the model, how often faces are scanned for and
    classified, --show-parts. The defaults are the pipeline's (emotion.video.follow)."""
    add_weights_option(parser, default=weights,
                       when_omitted=f"{weights!r}, fast enough for real time")
    add_backend_option(parser)
    add_frame_options(parser, detect_every, classify_every)
    add_show_parts_option(parser)


def add_show_parts_option(parser) -> None:
    """--show-parts: shared by predict, video and live."""
    parser.add_argument("--show-parts", action="store_true",
                        help="draw the eyes, eyebrows, mouth and small head-pose axes")
