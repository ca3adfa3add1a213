"""Command-line options that several commands share: checked numbers and the backend choice.

    number_type(int, 1)     an argparse `type` that also checks a range ("must be >= 1, got 0")
    RANGES, check_config    the allowed range of each training setting, for argparse and for a
                            config written in Python (which never passes through argparse)
    choose_backend(name)    --backend, else $NNLITE_BACKEND, else the fastest CPU backend here

Inference commands (predict, evaluate, live, video, explain) import this module, never the
training loop: a model is trained in one place and used in many.
"""

import argparse
import os

import numpy as np

import nnlite

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


def choose_backend(name=None) -> str:
    """The requested backend, else $NNLITE_BACKEND, else the fastest CPU one that works here."""
    source = ""
    if name is None:
        name = os.environ.get("NNLITE_BACKEND", "").strip().lower()
        source = f"NNLITE_BACKEND={name}: " if name else ""  # say where the name came from
        name = name or ("numba" if nnlite.available()["numba"] is None else "numpy")
    try:
        nnlite.use(name)
    except nnlite.backends.BackendError as err:
        raise UserError(f"{source}{err}") from None
    return name
