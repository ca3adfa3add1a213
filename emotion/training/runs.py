"""The folder of one training run (--out, default runs/MODEL): what it holds and the rules for it.

    best.npz        weights of the epoch with the best PublicTest accuracy (+ model name and
                    preprocessing config, so `emotion evaluate --weights best.npz` needs nothing else)
    last.npz        a full checkpoint (weights, optimizer, schedule, random states, position in
                    the epoch), written atomically each epoch and on Ctrl-C: --resume continues
                    exactly where the run stopped
    metrics.csv     one row per epoch
    curves.png      loss and accuracy curves

A folder that already holds a run is never overwritten by accident: train refuses it unless
--resume (continue it) or --overwrite (replace it) says what to do with it.

The training loop (train.py) decides *when* to write these files; this module knows *what*
goes in them and how to read them back.
"""

import csv
import hashlib
from pathlib import Path

import numpy as np

from nnlite import random as nnrandom
from nnlite.serialization import WeightFileError, load_arrays, save, save_arrays

from emotion.errors import UserError
from emotion.io.outputs import check_output_folder, same_file

CHECKPOINT_VERSION = 1
# What a resumed run must share with the run it continues (anything else may change, e.g.
# --early-stopping, --quiet or the --data path of the same file moved elsewhere).
RESUME_MUST_MATCH = ("model", "epochs", "batch_size", "lr", "optimizer", "momentum", "nesterov",
                     "weight_decay", "schedule", "warmup", "label_smoothing", "class_weights",
                     "no_augment", "seed", "limit", "ferplus", "ferplus_targets", "teacher",
                     "temperature", "distill_weight", "init")
# What a setting meant in checkpoints written before it existed: a run from before
# --ferplus-targets trained on the majority, and resumes as such.
RESUME_DEFAULTS = {"ferplus_targets": "majority"}
# What a run writes in OUT: a folder holding any of these holds a run, which a new run into
# the same folder would overwrite.
RUN_FILES = ("best.npz", "last.npz", "metrics.csv", "curves.png", "teacher.npz")


def data_identity(x_train, y_train, x_val, y_val) -> dict:
    """What the checkpoint remembers of the data a run trains on: the split sizes and a hash of
    the images and labels as used (after --limit). A resume checks it rather than the --data
    path, so the same file moved elsewhere resumes, and another file, or the same name
    holding other rows, is refused before it mixes two data sets into one run."""
    digest = hashlib.sha1()
    for array in (x_train, y_train, x_val, y_val):
        digest.update(np.ascontiguousarray(array).data)
    return {"training_images": int(len(y_train)), "publictest_images": int(len(y_val)),
            "sha1": digest.hexdigest()}


class RunFolder:
    """OUT for one run with `config` (the settings of `emotion train`, as a dict)."""

    def __init__(self, path, config):
        self.path, self.config = Path(path), config
        self.checkpoint_path = self.path / "last.npz"
        self.best_path = self.path / "best.npz"

    # -- before any work: what may be done with OUT ------------------------------------------
    def check_out(self, resume, overwrite, inputs=None):
        """Check OUT before any work: the checkpoint to resume (arrays, meta), or None.

        Nothing is lost by accident: a folder that already holds a run is refused unless the
        caller says what to do with it (resume it, or overwrite it), and no input (`inputs`:
        option -> path, e.g. {"--init": ...}) may be one of the files a run writes in OUT or
        --overwrite removes from it, whatever the caller says.
        """
        check_output_folder(self.path, "--out", probe=True)
        self.check_inputs_spared(inputs or {})
        if resume and overwrite:
            raise UserError("--resume continues the run in OUT and --overwrite replaces it: "
                            "pass only one of them")
        if resume:
            return self.read_checkpoint()
        existing = self.existing_files()
        if existing and not overwrite:
            raise UserError(
                f"{self.path} already holds a run ({self._describe(existing)}). Pass "
                f"--resume to continue it, --out with another folder to start a new run, or "
                f"--overwrite to replace it")
        return None

    def check_inputs_spared(self, inputs: dict) -> None:
        """UserError if an input is one of OUT's run files (RUN_FILES): the run would write
        over it, and --overwrite would delete it before it is even read."""
        for option, source in inputs.items():
            for name in RUN_FILES:
                if source and same_file(self.path / name, source):
                    raise UserError(
                        f"{option} {source} is {self.path / name}, a file this run writes "
                        f"(and --overwrite removes) in --out {self.path}: that would destroy "
                        f"the input; copy it elsewhere first, or choose another --out")

    def existing_files(self):
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def _describe(self, files) -> str:
        """'best.npz, last.npz, metrics.csv; epoch 2 of 3 done' for the files of the run here."""
        text = ", ".join(files)
        if "last.npz" in files:
            try:
                meta = load_arrays(self.checkpoint_path)[1]
                text += f"; epoch {meta['state']['epoch']} of {meta['config']['epochs']} done"
            except (WeightFileError, KeyError, TypeError):
                pass  # an unreadable checkpoint: the file names alone say enough
        return text

    def why_complete(self, state) -> str:
        """Why the run at `state` (a checkpoint's) has nothing left to do ("" if it has)."""
        c = self.config
        if state["epoch"] >= c["epochs"]:
            return f"epoch {state['epoch']} of {c['epochs']} is done"
        if (c.get("early_stopping") and state["bad_epochs"] >= c["early_stopping"]
                and state["batch"] == 0):
            return (f"it stopped early after epoch {state['epoch']} (no better PublicTest "
                    f"accuracy for {c['early_stopping']} epochs)")
        return ""

    def remove_previous_run(self):
        """--overwrite: the old run's files go first; OUT never mixes two runs' files (which
        replacing them one at a time, as the new run writes its own, would)."""
        removed = self.existing_files()
        for name in removed:
            (self.path / name).unlink()
        if removed:
            print(f"--overwrite: removed the previous run's {', '.join(removed)} from {self.path}")

    # -- the checkpoint: everything a Trainer needs to continue exactly ------------------------
    def save_checkpoint(self, trainer):
        """last.npz from a Trainer's model, optimizer, schedule, random states and position.

        Written atomically by save_arrays (a temporary file, then a rename): a crash mid-write
        leaves the previous checkpoint whole.
        """
        arrays = {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
        optimizer_state = trainer.optimizer.state_dict()
        # Arrays (momentum buffers) go into the npz, scalars (the step count) into the metadata.
        arrays.update({f"optim/{k}": v for k, v in optimizer_state.items() if not np.isscalar(v)})
        if trainer.order is not None:  # stopped mid-epoch: the rest of the epoch's order
            arrays["order"] = trainer.order
        meta = {
            "checkpoint_version": CHECKPOINT_VERSION,
            "config": trainer.config,
            "preprocess": trainer.preprocess_config.to_dict(),
            "state": trainer.state,
            "running": trainer.running,
            "optimizer": {k: v for k, v in optimizer_state.items() if np.isscalar(v)},
            "schedule": trainer.schedule.state_dict() if trainer.schedule else None,
            "rng": trainer.rng.bit_generator.state,
            "nnlite_rng": nnrandom.get_state(),
            "data": trainer.data_identity,
        }
        save_arrays(self.checkpoint_path, arrays, meta)

    def read_checkpoint(self):
        """(arrays, meta) of OUT/last.npz, checked against this run's settings. Needs no model,
        so that a wrong --resume fails before the data set is loaded."""
        path = self.checkpoint_path
        if not path.exists():
            raise UserError(f"cannot resume: {path} does not exist (there is no run to continue "
                            f"in {self.path}); start a new run without --resume (with "
                            f"--overwrite if {self.path} holds files of an earlier run)")
        try:
            arrays, meta = load_arrays(path)
        except WeightFileError as err:
            raise UserError(f"cannot resume: {err}") from None
        if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
            raise UserError(f"cannot resume: {path} is checkpoint version "
                            f"{meta.get('checkpoint_version')}, this version reads {CHECKPOINT_VERSION}")
        saved = meta.get("config", {})
        def setting(config, k):
            value = config.get(k)
            return RESUME_DEFAULTS.get(k) if value is None else value

        changed = [f"--{k.replace('_', '-')} {setting(self.config, k)!r} (the run used "
                   f"{setting(saved, k)!r})" for k in RESUME_MUST_MATCH
                   if setting(saved, k) != setting(self.config, k)]
        if changed:
            raise UserError(f"cannot resume {path} with different settings: {'; '.join(changed)}. "
                            "Resume with the run's settings, or start a new run with another --out")
        return arrays, meta

    def check_same_data(self, meta, identity: dict) -> None:
        """UserError if the checkpoint was trained on other data than `identity` describes
        (checkpoints written before the data was recorded pass)."""
        saved = meta.get("data")
        if saved is None or saved == identity:
            return

        def described(d):
            return (f"{d['training_images']} Training and {d['publictest_images']} PublicTest "
                    "images")

        sizes = ("the same number of images but different content"
                 if described(saved) == described(identity) else described(identity))
        raise UserError(
            f"cannot resume {self.checkpoint_path}: it was trained on --data "
            f"{meta['config'].get('data') or '(the default data)'} ({described(saved)}), but "
            f"--data {self.config.get('data') or '(the default data)'} holds {sizes}. Resume "
            "with the run's data, or start a new run with another --out")

    def restore_checkpoint(self, trainer, arrays, meta):
        """Put a Trainer's model, optimizer, schedule, random states and position back as
        read_checkpoint read them (the Trainer has built its model and optimizer already)."""
        trainer.model.load_state_dict(
            {k[6:]: v for k, v in arrays.items() if k.startswith("model/")},
            source=str(self.checkpoint_path))
        optimizer_state = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
        optimizer_state.update(meta["optimizer"])
        trainer.optimizer.load_state_dict(optimizer_state)
        if trainer.schedule and meta["schedule"]:
            trainer.schedule.load_state_dict(meta["schedule"])
        trainer.rng.bit_generator.state = meta["rng"]
        nnrandom.set_state(meta["nnlite_rng"])
        trainer.state, trainer.running = meta["state"], meta["running"]
        trainer.order = arrays.get("order")

    # -- what the run leaves for others ----------------------------------------------------------
    def save_best(self, trainer, accuracy):
        """best.npz: the weights, with what `EmotionClassifier.load` needs to use them alone,
        and the labels they learned ("labels": see emotion.training.votes.LABEL_SETS)."""
        from emotion.training.votes import labels_learned

        meta = {"model": trainer.config["model"], "preprocess": trainer.preprocess_config.to_dict(),
                "publictest_accuracy": accuracy, "epoch": trainer.state["epoch"],
                "backend": trainer.backend, "labels": labels_learned(trainer.config)}
        save(trainer.model, self.best_path, meta=meta)

    def write_metrics(self, history):
        """metrics.csv (rewritten whole, atomically enough for a log) and curves.png."""
        if not history:
            return
        path = self.path / "metrics.csv"
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        tmp.replace(path)
        try:
            plot_curves(history, self.path / "curves.png")
        except Exception as err:  # a plotting problem must never stop a training run
            print(f"warning: could not draw {self.path / 'curves.png'}: {type(err).__name__}: {err}")


def plot_curves(history, path):
    """Loss and accuracy per epoch, training beside PublicTest, from metrics.csv's rows."""
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
