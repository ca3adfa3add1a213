"""`emotion train`: train a model on FER2013 Training, validate on PublicTest every epoch.

What a run leaves in --out (default runs/MODEL):
    best.npz        weights of the epoch with the best PublicTest accuracy (+ model name and
                    preprocessing config, so `emotion evaluate --weights best.npz` needs nothing else)
    last.npz        a full checkpoint (weights, optimizer, schedule, random states, position in
                    the epoch), written atomically each epoch and on Ctrl-C: --resume continues
                    exactly where the run stopped
    metrics.csv     one row per epoch
    curves.png      loss and accuracy curves

A folder that already holds a run is never overwritten by accident: train refuses it unless
--resume (continue it) or --overwrite (replace it) says what to do with it.

Preprocessing runs once over the whole dataset (the same `preprocess` the live demo uses);
augmentation then runs per batch on the preprocessed images. Geometric augmentation commutes
with the per-pixel steps (gamma) up to interpolation, so the order costs nothing in accuracy
and saves preprocessing every image every epoch.
"""

import argparse
import csv
import json
import os
import signal
import time
from pathlib import Path

import numpy as np

import nnlite
import nnlite.functional as F
from nnlite import optim, summary
from nnlite import random as nnrandom
from nnlite.backends import numpy_kernels
from nnlite.serialization import WeightFileError, load_arrays, save_arrays

from emotion import models
from emotion.errors import UserError
from emotion.outputs import check_output_folder
from emotion.messages import plural
from emotion.labels import EMOTIONS

CHECKPOINT_VERSION = 1
# What a resumed run must share with the run it continues (anything else may change, e.g.
# --early-stopping, --quiet or the --data path of the same file moved elsewhere).
RESUME_MUST_MATCH = ("model", "epochs", "batch_size", "lr", "optimizer", "momentum", "nesterov",
                     "weight_decay", "schedule", "warmup", "label_smoothing", "class_weights",
                     "no_augment", "seed", "limit", "ferplus", "teacher", "temperature",
                     "distill_weight")
# What a run writes in OUT: a folder holding any of these holds a run, which a new run into
# the same folder would overwrite.
RUN_FILES = ("best.npz", "last.npz", "metrics.csv", "curves.png", "teacher.npz")


# -- checking the options ----------------------------------------------------------------------
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
# The allowed range of every numeric setting: used as the argparse types below, and again by
# Trainer for a config written in Python, which never passes through argparse.
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
}


def check_config(config) -> None:
    """UserError naming the first setting of `config` outside its range (see RANGES)."""
    for name, parse in RANGES.items():
        if config.get(name) is not None:
            try:
                parse(config[name])
            except argparse.ArgumentTypeError as err:
                raise UserError(f"{name} {err}") from None


def add_arguments(parser):
    parser.add_argument("--data", help="FER2013 csv(.gz), image folder, or .npz (default: "
                        "$EMOTION_DATA, then data/)")
    parser.add_argument("--model", default=models.DEFAULT_MODEL, choices=sorted(models.MODELS))
    # The defaults are the recipe of the shipped weights (see the README).
    parser.add_argument("--epochs", type=RANGES["epochs"], default=22)
    parser.add_argument("--batch-size", type=RANGES["batch_size"], default=128)
    parser.add_argument("--lr", type=RANGES["lr"], default=0.1, help="peak learning rate (> 0)")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--momentum", type=RANGES["momentum"], default=0.9, help="0 <= M < 1")
    parser.add_argument("--nesterov", action="store_true")
    parser.add_argument("--weight-decay", type=RANGES["weight_decay"], default=5e-4)
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "step", "plateau", "none"])
    parser.add_argument("--warmup", type=RANGES["warmup"], default=1,
                        help="warm-up epochs (cosine schedule)")
    parser.add_argument("--label-smoothing", type=RANGES["label_smoothing"], default=0.1,
                        help="0 <= S < 1")
    parser.add_argument("--class-weights", action="store_true",
                        help="weight the loss by inverse class frequency (helps 'disgust')")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--early-stopping", type=RANGES["early_stopping"], default=0,
                        metavar="EPOCHS", help="stop after this many epochs without a better "
                        "PublicTest accuracy (default 0: never)")
    parser.add_argument("--backend", default=None, choices=nnlite.backends.NAMES,
                        help="nnlite backend (default: numba if available, else numpy)")
    parser.add_argument("--out", default=None, help="output folder (default runs/MODEL)")
    what_to_do = parser.add_mutually_exclusive_group()
    what_to_do.add_argument("--resume", action="store_true", help="continue from OUT/last.npz")
    what_to_do.add_argument("--overwrite", action="store_true",
                            help="replace the run already in OUT (without this, train refuses "
                            "to overwrite one)")
    parser.add_argument("--seed", type=RANGES["seed"], default=0)
    parser.add_argument("--limit", type=RANGES["limit"], default=0, metavar="N",
                        help="use only the first N Training images and the first N//4 (at least "
                        "1) PublicTest images, for quick experiments and tests (default 0: all)")
    parser.add_argument("--ferplus", default=None, help="use FER+ majority labels from this csv")
    parser.add_argument("--teacher", default=None, metavar="WEIGHTS",
                        help="distil from this trained model (a weight file, or 'default' for "
                        "the shipped one): its softened probabilities join the labels as "
                        "targets (see emotion/distill.py)")
    parser.add_argument("--temperature", type=RANGES["temperature"], default=4.0,
                        help="softmax temperature of the teacher and student for --teacher")
    parser.add_argument("--distill-weight", type=RANGES["distill_weight"], default=0.7,
                        help="weight of the teacher's loss, 1 - it for the labels' (0..1)")
    parser.add_argument("--skip-bad-rows", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


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


def run(args) -> int:
    config = vars(args).copy()
    backend = choose_backend(args.backend)
    out = Path(args.out or f"runs/{args.model}")
    trainer = Trainer(config, out, backend)
    result = trainer.fit(resume=args.resume, progress=not args.quiet,
                         overwrite=getattr(args, "overwrite", False))
    print(json.dumps(result))
    return 130 if result["interrupted"] else 0  # 130: the shell's code for "stopped by Ctrl-C"


# -- data ------------------------------------------------------------------------------------
def load_splits(config):
    """Preprocessed (images, labels) for Training and PublicTest, plus the preprocessing config."""
    return preprocess_splits(*load_raw_splits(config))


def load_raw_splits(config):
    """(images, labels) for Training and PublicTest as read, pixels 0..255.

    Prints one line saying how many images of each split are used, and how the splits came
    about when the source did not name them: a validation accuracy means little without it.
    """
    from emotion.data import load_fer2013

    dataset = load_fer2013(config.get("data"), skip_bad_rows=config.get("skip_bad_rows", False),
                           ferplus=config.get("ferplus"))
    hint = ("Training learns from the Training rows and validates on the PublicTest rows: name "
            "both in the Usage column, or leave the Usage column out to have the rows split at "
            "random.")
    x_train, y_train = dataset.split("Training", required=True, hint=hint)
    x_val, y_val = dataset.split("PublicTest", required=True, hint=hint)
    note = ""
    if config.get("limit"):
        n = config["limit"]
        x_train, y_train = x_train[:n], y_train[:n]
        x_val, y_val = x_val[: max(n // 4, 1)], y_val[: max(n // 4, 1)]
        note = f" (--limit {n})"
    if "PublicTest" in dataset.drawn_splits:
        note += (f"; PublicTest is a seeded random share of each class: {dataset.source.name} "
                 "does not name its splits")
    print(f"data: {dataset.source}: training on {plural(len(y_train), 'Training image')}, "
          f"validating on {plural(len(y_val), 'PublicTest image')}{note}", flush=True)
    return x_train, y_train, x_val, y_val


def preprocess_splits(x_train, y_train, x_val, y_val):
    from emotion.preprocess import PreprocessConfig, fit_dataset_stats, preprocess

    pre = PreprocessConfig()
    if pre.normalize == "dataset":
        pre = fit_dataset_stats(x_train, pre)
    return preprocess(x_train, pre), y_train, preprocess(x_val, pre), y_val, pre


def batches(n, batch_size, order=None):
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def predict_logits(model, images, batch_size=256, device="cpu"):
    """Logits (N, 7) as a NumPy array, in eval mode and without building a graph."""
    was_training = model.training
    model.eval()
    out = []
    with nnlite.no_grad():
        for idx in batches(len(images), batch_size):
            x = nnlite.Tensor(nnlite.to_device(images[idx], device))
            out.append(nnlite.to_numpy(model(x)))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, len(EMOTIONS)), np.float32)


# -- the training loop -------------------------------------------------------------------------
class Trainer:
    def __init__(self, config, out: Path, backend: str):
        check_config(config)
        self.config, self.out, self.backend = config, Path(out), backend
        self.device = "cuda" if backend == "cuda" else "cpu"

    def _build(self):
        c = self.config
        nnlite.seed(c.get("seed", 0))
        self.model = models.build(c["model"])
        if self.device == "cuda":
            self.model.to("cuda")
        params = self.model.parameters()
        if c.get("optimizer", "sgd") == "adam":
            self.optimizer = optim.Adam(params, lr=c["lr"], weight_decay=c.get("weight_decay", 0))
        else:
            self.optimizer = optim.MomentumSGD(params, lr=c["lr"], momentum=c.get("momentum", 0.9),
                                               nesterov=c.get("nesterov", False),
                                               weight_decay=c.get("weight_decay", 0))
        schedule = c.get("schedule", "cosine")
        if schedule == "cosine":
            self.schedule = optim.CosineLR(self.optimizer, c["epochs"], min_lr=c["lr"] * 1e-3,
                                           warmup=c.get("warmup", 0))
        elif schedule == "step":
            self.schedule = optim.StepLR(self.optimizer, step_size=max(c["epochs"] // 3, 1), gamma=0.1)
        elif schedule == "plateau":
            self.schedule = optim.ReduceLROnPlateau(self.optimizer, mode="max", factor=0.5, patience=3)
        else:
            self.schedule = None
        self.rng = np.random.default_rng(c.get("seed", 0))
        self.state = {"epoch": 0, "batch": 0, "best_accuracy": -1.0, "best_epoch": 0,
                      "history": [], "bad_epochs": 0}
        self.order = None
        self.running = {"loss": 0.0, "correct": 0, "seen": 0}

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self):
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        optimizer_state = self.optimizer.state_dict()
        arrays.update({f"optim/{k}": v for k, v in optimizer_state.items() if not np.isscalar(v)})
        if self.order is not None:
            arrays["order"] = self.order
        meta = {
            "checkpoint_version": CHECKPOINT_VERSION,
            "config": self.config,
            "preprocess": self.preprocess_config.to_dict(),
            "state": self.state,
            "running": self.running,
            "optimizer": {k: v for k, v in optimizer_state.items() if np.isscalar(v)},
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "rng": self.rng.bit_generator.state,
            "nnlite_rng": nnrandom.get_state(),
        }
        save_arrays(self.out / "last.npz", arrays, meta)

    def read_checkpoint(self):
        """(arrays, meta) of OUT/last.npz, checked against this run's settings. Needs no model,
        so that a wrong --resume fails before the data set is loaded."""
        path = self.out / "last.npz"
        if not path.exists():
            raise UserError(f"cannot resume: {path} does not exist (there is no run to continue "
                            f"in {self.out}); start a new run without --resume (with "
                            f"--overwrite if {self.out} holds files of an earlier run)")
        try:
            arrays, meta = load_arrays(path)
        except WeightFileError as err:
            raise UserError(f"cannot resume: {err}") from None
        if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
            raise UserError(f"cannot resume: {path} is checkpoint version "
                            f"{meta.get('checkpoint_version')}, this version reads {CHECKPOINT_VERSION}")
        saved = meta.get("config", {})
        changed = [f"--{k.replace('_', '-')} {self.config.get(k)!r} (the run used {saved.get(k)!r})"
                   for k in RESUME_MUST_MATCH if saved.get(k) != self.config.get(k)]
        if changed:
            raise UserError(f"cannot resume {path} with different settings: {'; '.join(changed)}. "
                            "Resume with the run's settings, or start a new run with another --out")
        return arrays, meta

    def restore_checkpoint(self, arrays, meta):
        """Put the model, optimizer, schedule and random states back as read_checkpoint read
        them."""
        path = self.out / "last.npz"
        self.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")},
                                   source=str(path))
        optimizer_state = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
        optimizer_state.update(meta["optimizer"])
        self.optimizer.load_state_dict(optimizer_state)
        if self.schedule and meta["schedule"]:
            self.schedule.load_state_dict(meta["schedule"])
        self.rng.bit_generator.state = meta["rng"]
        nnrandom.set_state(meta["nnlite_rng"])
        self.state, self.running = meta["state"], meta["running"]
        self.order = arrays.get("order")

    def save_best(self, accuracy):
        from nnlite.serialization import save

        meta = {"model": self.config["model"], "preprocess": self.preprocess_config.to_dict(),
                "publictest_accuracy": accuracy, "epoch": self.state["epoch"],
                "backend": self.backend}
        save(self.model, self.out / "best.npz", meta=meta)

    # -- the output folder ---------------------------------------------------------------------
    def check_out(self, resume, overwrite):
        """Check OUT before any work: the checkpoint to resume (arrays, meta), or None.

        Nothing is lost by accident: a folder that already holds a run is refused unless the
        caller says what to do with it (resume it, or overwrite it).
        """
        check_output_folder(self.out, "--out")
        if resume and overwrite:
            raise UserError("--resume continues the run in OUT and --overwrite replaces it: "
                            "pass only one of them")
        if resume:
            return self.read_checkpoint()
        existing = [name for name in RUN_FILES if (self.out / name).exists()]
        if existing and not overwrite:
            raise UserError(
                f"{self.out} already holds a run ({_describe_run(self.out, existing)}). Pass "
                f"--resume to continue it, --out with another folder to start a new run, or "
                f"--overwrite to replace it")
        return None

    def _complete(self, state) -> str:
        """Why a checkpoint's run has nothing left to do ("" if it has)."""
        c = self.config
        if state["epoch"] >= c["epochs"]:
            return f"epoch {state['epoch']} of {c['epochs']} is done"
        if (c.get("early_stopping") and state["bad_epochs"] >= c["early_stopping"]
                and state["batch"] == 0):
            return (f"it stopped early after epoch {state['epoch']} (no better PublicTest "
                    f"accuracy for {c['early_stopping']} epochs)")
        return ""

    def _report_complete_run(self, state):
        """What --resume says, and returns, for a run that has nothing left to do."""
        self.state = state
        best = (f"; best PublicTest accuracy {state['best_accuracy']:.4f} at epoch "
                f"{state['best_epoch']}, in {self.out / 'best.npz'}" if state["best_epoch"] else "")
        print(f"{self.out} holds a complete run: {self._complete(state)}{best}. Nothing to "
              "resume; to train again, start a new run with another --out (or --overwrite)")
        return self._result(already_complete=True)

    def _remove_previous_run(self):
        # Removed, not left to be replaced one file at a time: OUT never mixes two runs' files.
        removed = [name for name in RUN_FILES if (self.out / name).exists()]
        for name in removed:
            (self.out / name).unlink()
        if removed:
            print(f"--overwrite: removed the previous run's {', '.join(removed)} from {self.out}")

    def _result(self, n_val=None, **extra):
        """What `fit` returns (and `emotion train` prints as JSON)."""
        best = self.state["best_accuracy"] if self.state["best_epoch"] else None
        return {"out": str(self.out), "best_publictest_accuracy": best,
                "best_epoch": self.state["best_epoch"], "epochs_done": self.state["epoch"],
                "validation_images": n_val, "interrupted": self.stop_requested, **extra}

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, resume=False, progress=True, overwrite=False):
        """Train (or continue, with resume=True) and return a summary dict.

        overwrite=True replaces a run already in OUT; without it, or resume, such a folder is
        refused with a UserError before anything is loaded or written.
        """
        from emotion.augment import Augmenter
        from emotion.data import class_weights

        c = self.config
        self.stop_requested = False
        checkpoint = self.check_out(resume, overwrite)
        if checkpoint is not None and self._complete(checkpoint[1]["state"]):
            return self._report_complete_run(checkpoint[1]["state"])
        nnlite.keep_freed_memory()  # each step reuses the last one's memory (nnlite/memory.py)
        raw = load_raw_splits(c)
        self.soft_targets = self._teacher_targets(raw[0]) if c.get("teacher") else None
        x_train, y_train, x_val, y_val, self.preprocess_config = preprocess_splits(*raw)
        del raw
        self._build()
        print(f"model: {c['model']}, {summary.count(self.model, x_train.shape[1:])} per image",
              flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            self.restore_checkpoint(*checkpoint)
            print(f"resuming {self.out / 'last.npz'} at epoch {self.state['epoch'] + 1}, "
                  f"batch {self.state['batch']}")
        elif overwrite:
            # Only now, with the data loaded and the model built: a mistake in the command
            # fails before the old run is gone.
            self._remove_previous_run()
        weights = class_weights(y_train) if c.get("class_weights") else None
        if weights is not None and self.device == "cuda":
            weights = nnlite.to_device(weights, "cuda")
        augment = None if c.get("no_augment") else Augmenter()
        n, bs = len(x_train), c["batch_size"]
        steps_per_epoch = -(-n // bs)
        # First Ctrl-C: finish the step (and the epoch's validation if it is under way), save,
        # stop. A second Ctrl-C stops at once and keeps the last complete checkpoint.
        previous_handler = _install_sigint_handler(self)
        try:
            while self.state["epoch"] < c["epochs"] and not self.stop_requested:
                self._run_epoch(x_train, y_train, x_val, y_val, weights, augment, n, bs,
                                steps_per_epoch, progress)
                if c.get("early_stopping") and self.state["bad_epochs"] >= c["early_stopping"]:
                    print(f"early stopping: no better PublicTest accuracy for "
                          f"{c['early_stopping']} epochs")
                    break
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        if self.stop_requested:
            print(f"interrupted: checkpoint saved to {self.out / 'last.npz'}; continue with --resume")
        return self._result(len(y_val))

    def _run_epoch(self, x_train, y_train, x_val, y_val, weights, augment, n, bs,
                   steps_per_epoch, progress):
        epoch = self.state["epoch"] + 1
        if self.order is None:  # a new epoch (a resumed one keeps its saved order)
            self.order = self.rng.permutation(n)
            self.running = {"loss": 0.0, "correct": 0, "seen": 0}
        bar = _progress(steps_per_epoch, self.state["batch"], f"epoch {epoch}/{self.config['epochs']}",
                        enabled=progress)
        start = time.perf_counter()
        seen_at_start = self.running["seen"]
        self.model.train()
        try:
            for b in range(self.state["batch"], steps_per_epoch):
                if self.stop_requested:  # between two steps: the state is consistent
                    self.save_checkpoint()
                    return
                idx = self.order[b * bs : (b + 1) * bs]
                images = x_train[idx]
                if augment is not None:
                    images = augment(images, self.rng)
                self._step(images, y_train[idx], weights, idx)
                self.state["batch"] = b + 1
                if bar is not None:
                    seen = self.running["seen"]
                    rate = (seen - seen_at_start) / max(time.perf_counter() - start, 1e-9)
                    bar.set_postfix(loss=f"{self.running['loss'] / max(seen, 1):.3f}",
                                    acc=f"{self.running['correct'] / max(seen, 1):.3f}",
                                    img_s=f"{rate:.0f}", refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        # Only the images of this call: on a resumed epoch, those before the interruption were
        # processed in another run's time and would inflate the images per second.
        self._end_epoch(epoch, time.perf_counter() - start, self.running["seen"] - seen_at_start,
                        x_val, y_val)

    def _teacher_targets(self, raw_train):
        """The teacher's probabilities for every Training image (emotion.distill), computed
        once per run and kept in OUT/teacher.npz, so a resumed run does not recompute them."""
        from emotion import distill

        c, path = self.config, self.out / "teacher.npz"
        if path.exists():
            try:
                arrays, _ = load_arrays(path)
                return distill.check_targets(arrays["probabilities"], len(raw_train), path)
            except (WeightFileError, KeyError):
                raise UserError(f"{path} is not a teacher file of this run: delete it to have it "
                                "recomputed") from None
        print(f"teacher: {c['teacher']} on {plural(len(raw_train), 'Training image')} and "
              f"their mirror images (T = {c.get('temperature', 4.0)})", flush=True)
        targets = distill.teacher_probabilities(c["teacher"], raw_train, c.get("temperature", 4.0),
                                                self.device, progress=not c.get("quiet"))
        self.out.mkdir(parents=True, exist_ok=True)
        save_arrays(path, {"probabilities": targets}, {"teacher": str(c["teacher"]),
                                                       "temperature": c.get("temperature", 4.0)})
        return targets

    def _step(self, images, labels, weights, index):
        if self.device == "cuda":  # see nnrandom.seed_device: keeps a resumed GPU run exact
            nnrandom.seed_device(self.config.get("seed", 0) * 1_000_003 + self.optimizer.steps)
        from emotion import distill

        x = nnlite.Tensor(nnlite.to_device(images, self.device))
        y = nnlite.to_device(labels, self.device)
        logits = self.model(x)
        soft = (None if self.soft_targets is None else
                nnlite.to_device(self.soft_targets[index], self.device))
        loss = distill.loss(logits, y, soft, self.config.get("temperature", 4.0),
                            self.config.get("distill_weight", 0.7) if soft is not None else 0,
                            class_weights=weights,
                            label_smoothing=self.config.get("label_smoothing", 0.0))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        # One small device-to-host copy per step for the progress bar (a scalar and 64 ints).
        self.running["loss"] += float(nnlite.to_numpy(loss.data)) * len(labels)
        self.running["correct"] += int((nnlite.to_numpy(logits.data).argmax(1) == labels).sum())
        self.running["seen"] += len(labels)

    def _end_epoch(self, epoch, seconds, images_processed, x_val, y_val):
        logits = predict_logits(self.model, x_val, device=self.device)
        val_loss = float(_cross_entropy(logits, y_val))
        val_acc = float((logits.argmax(1) == y_val).mean())
        seen = max(self.running["seen"], 1)
        row = {"epoch": epoch, "lr": self.optimizer.lr,
               "train_loss": self.running["loss"] / seen,
               "train_accuracy": self.running["correct"] / seen,
               "val_loss": val_loss, "val_accuracy": val_acc,
               "seconds": seconds, "images_per_second": images_processed / max(seconds, 1e-9)}
        self.state["history"].append(row)
        self.state["epoch"], self.state["batch"] = epoch, 0
        self.order = None  # the next epoch draws a new order (after a resume too)
        if val_acc > self.state["best_accuracy"]:
            self.state.update(best_accuracy=val_acc, best_epoch=epoch, bad_epochs=0)
            self.save_best(val_acc)
        else:
            self.state["bad_epochs"] += 1
        if self.schedule is not None:
            self.schedule.step(val_acc)
        self.save_checkpoint()
        write_metrics(self.out, self.state["history"])
        print(f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
              f"PublicTest loss {val_loss:.4f} acc {val_acc:.4f} | {seconds:.1f}s "
              f"({row['images_per_second']:.0f} img/s) | best {self.state['best_accuracy']:.4f} "
              f"@ {self.state['best_epoch']}", flush=True)


def _describe_run(out: Path, files) -> str:
    """'best.npz, last.npz, metrics.csv; epoch 2 of 3 done' for the files of a run in `out`."""
    text = ", ".join(files)
    if "last.npz" in files:
        try:
            meta = load_arrays(out / "last.npz")[1]
            text += f"; epoch {meta['state']['epoch']} of {meta['config']['epochs']} done"
        except (WeightFileError, KeyError, TypeError):
            pass  # an unreadable checkpoint: the file names alone say enough
    return text


def _install_sigint_handler(trainer):
    """First Ctrl-C: finish the current step, save a checkpoint and stop. A second one stops at
    once (KeyboardInterrupt) without saving, so last.npz stays the last consistent state:
    never a half-applied optimizer update."""
    def request_stop(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        print("\nstopping after this step (Ctrl-C again to stop at once)...", flush=True)

    try:
        return signal.signal(signal.SIGINT, request_stop)
    except ValueError:  # not the main thread: leave the default behaviour
        return None


def _cross_entropy(logits, labels):
    """Mean cross-entropy of host logits (the validation loss), with nnlite's own log-softmax."""
    logp = numpy_kernels.log_softmax(logits)
    return -logp[np.arange(len(labels)), labels].mean()


def _progress(total, initial, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False)


def write_metrics(out: Path, history):
    """metrics.csv (rewritten whole, atomically enough for a log) and curves.png."""
    if not history:
        return
    path = out / "metrics.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
    try:
        plot_curves(history, out / "curves.png")
    except Exception as err:  # a plotting problem must never stop a training run
        print(f"warning: could not draw {out / 'curves.png'}: {type(err).__name__}: {err}")


def plot_curves(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax1.plot(epochs, [r["val_loss"] for r in history], label="PublicTest")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.plot(epochs, [r["train_accuracy"] for r in history], label="train")
    ax2.plot(epochs, [r["val_accuracy"] for r in history], label="PublicTest")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
