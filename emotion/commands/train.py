"""`emotion train`: train a model on FER2013 Training, validate on PublicTest every epoch.

The loop itself is the README's ten lines (model, loss, zero_grad, backward, step) with what a
real run adds around them: batches in a seeded random order, augmentation, a learning-rate
schedule, one validation pass and one checkpoint per epoch, Ctrl-C that stops cleanly. Beside
it: emotion/training/runs.py (the --out folder: what a run leaves there, checkpoints,
--resume/--overwrite) and options.py (the checked option types).

Preprocessing runs once over the whole dataset (the same `preprocess` the live demo uses);
augmentation then runs per batch on the preprocessed images. Geometric augmentation commutes
with the per-pixel steps (gamma) up to interpolation, so the order costs nothing in accuracy
and saves preprocessing every image every epoch.
"""

import json
import signal
import time
from pathlib import Path

import numpy as np

import nnlite
import nnlite.functional as F
from nnlite import optim, summary
from nnlite import random as nnrandom
from nnlite.backends import get_array_module
from nnlite.serialization import WeightFileError, load_arrays, save_arrays

from emotion.cnn import models
from emotion.face import geometry as face_geometry
from emotion.errors import UserError
from emotion.labels import EMOTIONS
from emotion.cnn.classifier import choose_backend
from emotion.commands.options import RANGES, add_backend_option, check_config
from emotion.training.runs import RunFolder, data_identity
from emotion.io.messages import plural


# -- the command line ----------------------------------------------------------------------------
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
    add_backend_option(parser)
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
    parser.add_argument("--ferplus", default=None, help="use FER+ labels from this csv "
                        "(fer2013new.csv(.gz)) in place of FER2013's")
    parser.add_argument("--ferplus-targets", default="majority", choices=["majority", "votes"],
                        help="with --ferplus: train on each face's majority label, or on the "
                        "distribution of its ten annotators' votes (emotion/training/votes.py; "
                        "with --teacher the votes take the labels' place in the mix)")
    parser.add_argument("--teacher", default=None, metavar="WEIGHTS",
                        help="distil from this trained model (a weight file, or 'default' for "
                        "the shipped one): its softened probabilities join the labels as "
                        "targets (see emotion/training/distill.py)")
    parser.add_argument("--temperature", type=RANGES["temperature"], default=4.0,
                        help="softmax temperature of the teacher and student for --teacher")
    parser.add_argument("--distill-weight", type=RANGES["distill_weight"], default=0.7,
                        help="weight of the teacher's loss, 1 - it for the labels' (0..1)")
    parser.add_argument("--init", default=None, metavar="WEIGHTS",
                        help="start from this trained weight file of the same --model (a "
                        "shipped name or runs/NAME/best.npz) instead of random weights: a "
                        "second schedule, or fine-tuning; the optimizer starts afresh")
    parser.add_argument("--landmarks", default=None, metavar="LABELS",
                        help="the landmark teacher's labels (.npz from "
                        "emotion/training/landmark_teacher.py): train a model with a geometry "
                        "head (--model mobile_face) on 68 points and the head pose too")
    parser.add_argument("--geometry-weight", type=RANGES["geometry_weight"], default=1.0,
                        help="weight of the landmark and pose loss beside the emotion loss")
    parser.add_argument("--presence-weight", type=RANGES["presence_weight"], default=1.0,
                        help="with --landmarks, on a model with a presence head: the weight of "
                        "its loss; each batch gets a quarter more crops made to be off the face "
                        "(emotion/training/presence.py); 0 trains no presence")
    parser.add_argument("--freeze-trunk", action="store_true",
                        help="with --landmarks: train only the geometry head, the shared "
                        "layers and the emotion head kept as loaded (--init)")
    parser.add_argument("--skip-bad-rows", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    config = vars(args).copy()
    backend = choose_backend(args.backend)
    out = Path(args.out or f"runs/{args.model}")
    trainer = Trainer(config, out, backend)
    result = trainer.fit(resume=args.resume, progress=not args.quiet,
                         overwrite=getattr(args, "overwrite", False))
    print(json.dumps(result))
    return 130 if result["interrupted"] else 0  # 130: the shell's code for "stopped by Ctrl-C"


# -- data and validation -------------------------------------------------------------------------
def load_splits(config):
    """Preprocessed (images, labels) for Training and PublicTest, plus the preprocessing config."""
    return preprocess_splits(*load_raw_splits(config))


def load_dataset(config):
    from emotion.training.data import load_fer2013

    return load_fer2013(config.get("data"), skip_bad_rows=config.get("skip_bad_rows", False),
                        ferplus=config.get("ferplus"),
                        ferplus_targets=config.get("ferplus_targets") or "majority")


def training_votes(config, dataset):
    """The FER+ vote distributions (N, 7) of the Training images load_raw_splits returns, or
    None when the run trains on labels."""
    votes = dataset.votes.get("Training")
    if votes is None:
        return None
    return votes[: config["limit"]] if config.get("limit") else votes


def split_rows(config, dataset):
    """The source rows of the Training and PublicTest images that load_raw_splits returns."""
    train, val = dataset.rows["Training"], dataset.rows["PublicTest"]
    if config.get("limit"):
        n = config["limit"]
        train, val = train[:n], val[: max(n // 4, 1)]
    return train, val


def load_raw_splits(config, dataset=None):
    """(images, labels) for Training and PublicTest as read, pixels 0..255.

    Prints one line saying how many images of each split are used, and how the splits came
    about when the source did not name them: a validation accuracy means little without it.
    """
    if dataset is None:
        dataset = load_dataset(config)
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
    from emotion.cnn.preprocess import PreprocessConfig, fit_dataset_stats, preprocess

    pre = PreprocessConfig()
    if pre.normalize == "dataset":
        pre = fit_dataset_stats(x_train, pre)
    return preprocess(x_train, pre), y_train, preprocess(x_val, pre), y_val, pre


def batches(n, batch_size, order=None):
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def predict_geometry(model, images, batch_size=256, device="cpu"):
    """(logits (N, 7), geometry (N, 139), presence logits (N,)) as NumPy arrays of a model
    with a geometry head, in eval mode and without building a graph."""
    was_training = model.training
    model.eval()
    outputs = ([], [], [])
    with nnlite.no_grad():
        for idx in batches(len(images), batch_size):
            x = nnlite.Tensor(nnlite.to_device(images[idx], device))
            for kept, out in zip(outputs, model.geometry_forward(x)):
                kept.append(nnlite.to_numpy(out))
    model.train(was_training)
    return tuple(np.concatenate(kept) for kept in outputs)


def presence_errors(model, images, on_faces, device="cpu") -> dict:
    """The presence head on PublicTest: the share of its faces called not a face
    (`presence_miss`, from `on_faces`, the presence logits of `images` the epoch's validation
    already has), and of the negatives among as many crops made from them
    (emotion.training.presence, seeded: the same crops every epoch) called a face
    (`presence_false`), at p = 0.5."""
    from emotion.training import presence

    crops, targets = presence.presence_crops(images, len(images), np.random.default_rng(12345))
    _, _, on_crops = predict_geometry(model, crops, device=device)
    return {"presence_miss": float((on_faces < 0).mean()),
            "presence_false": float((on_crops[targets == 0] >= 0).mean())}


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


def validation_loss(logits, labels) -> float:
    """Mean cross-entropy of host logits (N, 7): the training loss without label smoothing or
    class weights, so that runs with different settings compare on one scale."""
    with nnlite.no_grad():
        return float(F.softmax_cross_entropy(logits, labels).item())


# -- what a config builds --------------------------------------------------------------------------
def make_optimizer(params, c):
    if c.get("optimizer", "sgd") == "adam":
        return optim.Adam(params, lr=c["lr"], weight_decay=c.get("weight_decay", 0))
    return optim.MomentumSGD(params, lr=c["lr"], momentum=c.get("momentum", 0.9),
                             nesterov=c.get("nesterov", False),
                             weight_decay=c.get("weight_decay", 0))


def make_schedule(optimizer, c):
    """The learning-rate schedule, stepped once an epoch (None: a constant rate)."""
    schedule = c.get("schedule", "cosine")
    if schedule == "cosine":
        return optim.CosineLR(optimizer, c["epochs"], min_lr=c["lr"] * 1e-3,
                              warmup=c.get("warmup", 0))
    if schedule == "step":
        return optim.StepLR(optimizer, step_size=max(c["epochs"] // 3, 1), gamma=0.1)
    if schedule == "plateau":
        return optim.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)
    return None


# -- the training loop ---------------------------------------------------------------------------
class Trainer:
    """One run of `config` (the settings of `emotion train` as a dict) into the folder `out`.

    What the loop needs to continue exactly after a stop is its state: `model`, `optimizer`,
    `schedule`, `rng` (batch order, augmentation), `state` (epoch, batch, best so far,
    history), `running` (the epoch's loss and accuracy so far) and `order` (the epoch's batch
    order). RunFolder saves and restores exactly these.
    """

    def __init__(self, config, out: Path, backend: str):
        check_config(config)
        self.config, self.out, self.backend = config, Path(out), backend
        self.device = "cuda" if backend == "cuda" else "cpu"
        self.folder = RunFolder(self.out, config)
        self.data_identity = None  # set by fit() from the data it loads; kept in checkpoints

    def _build(self):
        c = self.config
        nnlite.seed(c.get("seed", 0))
        self.model = models.build(c["model"])
        if self.device == "cuda":
            self.model.to("cuda")
        self.optimizer = make_optimizer(self.model.parameters(), c)
        self.schedule = make_schedule(self.optimizer, c)
        self.rng = np.random.default_rng(c.get("seed", 0))
        self.state = {"epoch": 0, "batch": 0, "best_accuracy": -1.0, "best_epoch": 0,
                      "history": [], "bad_epochs": 0}
        self.order = None
        self.running = {"loss": 0.0, "correct": 0, "seen": 0}

    def fit(self, resume=False, progress=True, overwrite=False):
        """Train (or continue, with resume=True) and return a summary dict.

        overwrite=True replaces a run already in OUT; without it, or resume, such a folder is
        refused with a UserError before anything is loaded or written.
        """
        from emotion.training.augment import Augmenter
        from emotion.training.data import class_weights

        c = self.config
        self.stop_requested = False
        checkpoint = self.folder.check_out(resume, overwrite, self._inputs())
        if checkpoint is not None and self.folder.why_complete(checkpoint[1]["state"]):
            return self._report_complete_run(checkpoint[1]["state"])
        init = self._init_weights() if c.get("init") and checkpoint is None else None
        if c.get("landmarks") and c["model"] not in models.GEOMETRY_MODELS:
            raise UserError(f"--landmarks trains a geometry head, which --model {c['model']} "
                            f"has not: use --model {' or '.join(models.GEOMETRY_MODELS)}")
        if c.get("freeze_trunk") and not (c.get("landmarks") and (init or checkpoint)):
            raise UserError("--freeze-trunk keeps the trained layers as they are: it needs "
                            "--landmarks and the weights to keep (--init)")
        self._check_targets()
        if c.get("teacher") and not (checkpoint is not None
                                     and (self.out / "teacher.npz").exists()):
            self._check_teacher()  # a broken file fails now, not after the data has loaded
        nnlite.keep_freed_memory()  # each step reuses the last one's memory (nnlite/memory.py)
        dataset = load_dataset(c)
        raw = load_raw_splits(c, dataset)
        self.geometry_train = self.geometry_val = None
        if c.get("landmarks"):
            from emotion.training import landmark_labels

            labels = landmark_labels.load_labels(c["landmarks"], dataset.source)
            rows_train, rows_val = split_rows(c, dataset)
            self.geometry_train = landmark_labels.targets_for(labels, rows_train)
            self.geometry_val = landmark_labels.targets_for(labels, rows_val)
            print(f"landmarks: {c['landmarks']}: a teacher label for "
                  f"{int(self.geometry_train[2].sum())} of {len(rows_train)} Training and "
                  f"{int(self.geometry_val[2].sum())} of {len(rows_val)} PublicTest images",
                  flush=True)
        self.votes_train = training_votes(c, dataset)
        del dataset
        self.data_identity = data_identity(*raw)
        if checkpoint is not None:
            self.folder.check_same_data(checkpoint[1], self.data_identity)
        self.soft_targets = self._teacher_targets(raw[0]) if c.get("teacher") else None
        x_train, y_train, x_val, y_val, self.preprocess_config = preprocess_splits(*raw)
        del raw
        self._build()
        print(f"model: {c['model']}, {summary.count(self.model, x_train.shape[1:])} per image",
              flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            self.folder.restore_checkpoint(self, *checkpoint)
            print(f"resuming {self.folder.checkpoint_path} at epoch {self.state['epoch'] + 1}, "
                  f"batch {self.state['batch']}")
        if init is not None:
            self._load_init(init)
        if checkpoint is None and overwrite:
            # Only now, with the data loaded and the model built: a mistake in the command
            # fails before the old run is gone.
            self.folder.remove_previous_run()
        self.class_weights = class_weights(y_train) if c.get("class_weights") else None
        if self.class_weights is not None and self.device == "cuda":
            self.class_weights = nnlite.to_device(self.class_weights, "cuda")
        augment = None if c.get("no_augment") else Augmenter()
        # First Ctrl-C: finish the step (and the epoch's validation if it is under way), save,
        # stop. A second Ctrl-C stops at once and keeps the last complete checkpoint.
        previous_handler = _install_sigint_handler(self)
        try:
            while self.state["epoch"] < c["epochs"] and not self.stop_requested:
                timing = self._run_epoch(x_train, y_train, augment, progress)
                if timing is None:
                    break  # stopped between two steps, checkpoint saved
                self._end_epoch(x_val, y_val, *timing)
                if c.get("early_stopping") and self.state["bad_epochs"] >= c["early_stopping"]:
                    print(f"early stopping: no better PublicTest accuracy for "
                          f"{c['early_stopping']} epochs")
                    break
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        if self.stop_requested:
            print(f"interrupted: checkpoint saved to {self.folder.checkpoint_path}; continue "
                  "with --resume")
        return self._result(len(y_val))

    def _run_epoch(self, x_train, y_train, augment, progress):
        """The epoch's batches from where it stands (a resumed epoch from its saved batch).

        Returns (seconds, images) of this call once every batch ran, even if a stop came
        during the last one (fit then validates and saves the finished epoch before it stops);
        None if a stop was requested before the last batch (the checkpoint is saved then).
        Only the images of this call count: on a resumed epoch, those before the interruption
        were processed in another run's time and would inflate the images per second.
        """
        n, bs = len(x_train), self.config["batch_size"]
        steps_per_epoch = -(-n // bs)
        if self.order is None:  # a new epoch (a resumed one keeps its saved order)
            self.order = self.rng.permutation(n)
            self.running = {"loss": 0.0, "correct": 0, "seen": 0}
        bar = _progress(steps_per_epoch, self.state["batch"],
                        f"epoch {self.state['epoch'] + 1}/{self.config['epochs']}", progress)
        start = time.perf_counter()
        seen_at_start = self.running["seen"]
        self._train_mode()
        try:
            for b in range(self.state["batch"], steps_per_epoch):
                if self.stop_requested:  # between two steps: the state is consistent
                    self.folder.save_checkpoint(self)
                    return None
                idx = self.order[b * bs : (b + 1) * bs]
                images, geometry = x_train[idx], None
                if self.geometry_train is not None:
                    points, pose, has = (a[idx] for a in self.geometry_train)
                    if augment is not None:  # the labels move with the pixels
                        images, points, pose = augment(images, self.rng, points, pose)
                    geometry = (face_geometry.encode(points, pose, images.shape[-1]), has,
                                self._negatives(x_train[idx]))
                elif augment is not None:
                    images = augment(images, self.rng)
                self._step(images, y_train[idx], idx, geometry)
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
        return time.perf_counter() - start, self.running["seen"] - seen_at_start

    def _train_mode(self):
        """Training mode, but with --freeze-trunk everything except the geometry head stays
        in eval mode: frozen batch norms keep their running statistics, and the frozen
        dropout is off, as the layers will run at inference."""
        self.model.train()
        if self.config.get("freeze_trunk"):
            for layer in self.model.layers:
                layer.eval()

    def _trains_presence(self) -> bool:
        return (self.geometry_train is not None and models.has_presence(self.model)
                and self.config.get("presence_weight", 1.0) > 0)

    def _negatives(self, images):
        """A quarter of the batch again, as (crops, presence targets), most of them not a
        framed face, for the presence head (emotion.training.presence); None when the run
        does not train it."""
        from emotion.training import presence

        if not self._trains_presence():
            return None
        return presence.presence_crops(images, max(len(images) // 4, 1), self.rng)

    def _step(self, images, labels, index, geometry=None):
        """One optimizer step on a batch of preprocessed (augmented) images (`index`: their
        rows in the Training set, for the teacher's targets; `geometry`: (targets (N, 139),
        has_label (N,), negatives (M, 1, 48, 48) or None) for a model with a geometry
        head)."""
        if self.device == "cuda":  # see nnrandom.seed_device: keeps a resumed GPU run exact
            nnrandom.seed_device(self.config.get("seed", 0) * 1_000_003 + self.optimizer.steps)
        x = nnlite.Tensor(nnlite.to_device(images, self.device))
        y = nnlite.to_device(labels, self.device)
        soft = (None if self.soft_targets is None else
                nnlite.to_device(self.soft_targets[index], self.device))
        votes = (None if self.votes_train is None else
                 nnlite.to_device(self.votes_train[index], self.device))
        if geometry is None:
            logits = self.model(x)
            loss = self.loss(logits, y, soft, votes)
        else:
            logits, loss = self._geometry_loss(x, y, soft, votes, *geometry)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        # One small device-to-host copy per step for the progress bar (a scalar and 64 ints).
        value = float(nnlite.to_numpy(loss.data))
        if not np.isfinite(value):
            raise UserError(
                f"the training loss is {value} at epoch {self.state['epoch'] + 1}, batch "
                f"{self.state['batch'] + 1}: the run diverged (try a smaller --lr than "
                f"{self.config['lr']}); nothing of this epoch was saved, {self.out / 'best.npz'} "
                "holds the best finite epoch, if any")
        self.running["loss"] += value * len(labels)
        self.running["correct"] += int((nnlite.to_numpy(logits.data).argmax(1) == labels).sum())
        self.running["seen"] += len(labels)

    def loss(self, logits, labels, soft_targets=None, votes=None):
        """The training objective, the one place it is computed: softmax cross-entropy with
        label smoothing and, with --class-weights, inverse class frequencies, or with
        --ferplus-targets votes the cross-entropy against the annotators' vote distribution
        (emotion.training.votes); with --teacher, mixed with the distillation loss against
        the teacher's targets (emotion.training.distill)."""
        from emotion.training import distill, votes as vote_targets

        c = self.config
        weight = c.get("distill_weight", 0.7) if soft_targets is not None else 0
        smoothing = c.get("label_smoothing", 0.0)
        if votes is not None:
            hard = vote_targets.loss(logits, votes, smoothing)
        else:
            hard = F.softmax_cross_entropy(logits, labels, class_weights=self.class_weights,
                                           label_smoothing=smoothing)
        return distill.mix(hard, logits, soft_targets, c.get("temperature", 4.0), weight)

    def _geometry_loss(self, x, y, soft, votes, targets, has, negatives=None):
        """(logits, loss) for a model with a geometry head: the emotion loss plus
        --geometry-weight times the landmark and pose loss (geometry_loss), plus, with
        `negatives`, --presence-weight times the presence loss (presence_loss). The
        negatives run in the same pass as the faces (one batch, one set of batch-norm
        statistics) and count in the presence loss only. With --freeze-trunk only the heads
        learn, so the trunk runs without a graph."""
        c, model = self.config, self.model
        n = x.shape[0]
        targets = nnlite.to_device(targets, self.device)
        has = nnlite.to_device(has.astype(np.float32), self.device)
        if negatives is not None:
            negatives, presence_targets = negatives
            xp = get_array_module(x.data)
            x = nnlite.Tensor(xp.concatenate([x.data, nnlite.to_device(negatives, self.device)]))
            presence_targets = np.concatenate([np.ones(n, np.float32), presence_targets])
        if c.get("freeze_trunk"):
            with nnlite.no_grad():
                features = model.trunk()(x)
                logits = model.emotion_head()(features)
            features = nnlite.Tensor(features.data)
            loss = geometry_loss(model.geometry(features)[:n], targets, has)
            if negatives is not None:
                loss = loss + presence_loss(model.presence(features), presence_targets,
                                            self.device) * float(
                    c.get("presence_weight", 1.0))
            return logits[:n], loss
        logits, geometry, presence = model.geometry_forward(x)
        if negatives is not None:
            logits, geometry = logits[:n], geometry[:n]
        loss = self.loss(logits, y, soft, votes) + geometry_loss(geometry, targets, has) * float(
            c.get("geometry_weight", 1.0))
        if negatives is not None:
            loss = loss + presence_loss(presence, presence_targets, self.device) * float(
                c.get("presence_weight", 1.0))
        return logits, loss

    def _load_init(self, path):
        """--init into the model built: the same model's file as it is; a file of a model it
        may start from (models.INIT_FROM) into the layers they share."""
        trained_for = nnlite.read_meta(path).get("model")
        arrays, _ = load_arrays(path)
        if trained_for == self.config["model"] and set(arrays) >= set(self.model.state_dict()):
            nnlite.load(self.model, path)
            print(f"starting from {path}", flush=True)
            return
        fresh = models.init_from(self.model, arrays, str(path))
        print(f"starting from {path} ({trained_for}); new: {', '.join(fresh)}", flush=True)
    def _inputs(self) -> dict:
        """The files this run reads, by option: no output or clean-up of OUT may touch them."""
        from emotion.cnn.classifier import resolve_weights

        c = self.config
        return {"--init": c.get("init") and resolve_weights(c["init"]),
                "--teacher": c.get("teacher") and resolve_weights(c["teacher"]),
                "--data": c.get("data"), "--ferplus": c.get("ferplus")}

    def _check_targets(self) -> None:
        """--ferplus-targets votes: it needs the votes (--ferplus), and --class-weights, which
        weighs each face by its one label's class, has no meaning for a distribution."""
        c = self.config
        if (c.get("ferplus_targets") or "majority") == "majority":
            return
        if not c.get("ferplus"):
            raise UserError("--ferplus-targets votes trains on the FER+ annotators' votes: "
                            "pass their file with --ferplus fer2013new.csv(.gz)")
        if c.get("class_weights"):
            raise UserError("--class-weights weighs each face by its label's class, which "
                            "--ferplus-targets votes does not give: drop one of the two")

    def _check_teacher(self) -> None:
        """--teacher: the weight file loads (complete, finite, a known model), before any
        data is loaded; distill loads it again, on the run's backend, when it is used."""
        from emotion.cnn.classifier import EmotionClassifier

        try:  # on the run's own backend: loading selects it for the whole process
            EmotionClassifier.load(self.config["teacher"], backend=self.backend)
        except (WeightFileError, UserError) as err:
            raise UserError(f"--teacher: {err}") from None

    def _init_weights(self) -> Path:
        """--init: the weight file to start from, checked before any data is loaded. It must
        hold the same model; a resumed run restores its own checkpoint instead."""
        from emotion.cnn.classifier import resolve_weights

        c = self.config
        path = resolve_weights(c["init"])
        if not path.is_file():
            raise UserError(f"--init: weight file not found: {path}")
        try:
            trained_for = nnlite.read_meta(path).get("model")
        except WeightFileError as err:
            raise UserError(f"--init: {err}") from None
        if trained_for != c["model"] and trained_for not in models.INIT_FROM.get(c["model"], ()):
            raise UserError(f"--init: {path} holds a {trained_for!r} model, not the "
                            f"{c['model']!r} of --model")
        try:  # every array, its shape and finiteness: what the run would find after the data
            model = models.build(c["model"])
            if trained_for == c["model"] and set(load_arrays(path)[0]) >= set(model.state_dict()):
                nnlite.load(model, path)
            else:
                models.init_from(models.build(c["model"]), load_arrays(path)[0], str(path))
        except (WeightFileError, ValueError) as err:
            raise UserError(f"--init: {err}") from None
        return path

    def _teacher_targets(self, raw_train):
        """The teacher's probabilities for every Training image (training.distill), computed
        once per run and kept in OUT/teacher.npz, so a resumed run does not recompute them."""
        from emotion.training import distill

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

    def _end_epoch(self, x_val, y_val, seconds, images_processed):
        """Validate, keep the best weights, step the schedule, save the checkpoint and log."""
        epoch = self.state["epoch"] + 1
        measures = {}
        if self.geometry_val is None:
            logits = predict_logits(self.model, x_val, device=self.device)
        else:
            from emotion.training import landmark_labels

            logits, geometry, on_faces = predict_geometry(self.model, x_val, device=self.device)
            points, pose = face_geometry.decode(geometry, x_val.shape[-1])
            measures = landmark_labels.errors(points, pose, *self.geometry_val)
            if self._trains_presence():
                measures.update(presence_errors(self.model, x_val, on_faces, self.device))
        val_loss = validation_loss(logits, y_val)
        if not np.isfinite(logits).all():  # weights gone to inf/NaN: never saved as best
            raise UserError(f"the model's outputs are not finite after epoch {epoch}: the run "
                            f"diverged (try a smaller --lr than {self.config['lr']}); "
                            f"{self.out / 'best.npz'} holds the best finite epoch, if any")
        val_acc = float((logits.argmax(1) == y_val).mean())
        seen = max(self.running["seen"], 1)
        row = {"epoch": epoch, "lr": self.optimizer.lr,
               "train_loss": self.running["loss"] / seen,
               "train_accuracy": self.running["correct"] / seen,
               "val_loss": val_loss, "val_accuracy": val_acc,
               "seconds": seconds, "images_per_second": images_processed / max(seconds, 1e-9),
               **{f"val_{k}": v for k, v in measures.items()}}
        self.state["history"].append(row)
        self.state["epoch"], self.state["batch"] = epoch, 0
        self.order = None  # the next epoch draws a new order (after a resume too)
        # The epoch kept as best.npz: the best PublicTest accuracy; with a geometry head, the
        # best accuracy minus NME (both fractions): a point of accuracy weighs as much as a
        # point of NME (a quarter of a typical 4% NME), and a frozen trunk (constant
        # accuracy) is chosen on NME alone.
        score = val_acc - (measures.get("nme") or 0.0)
        if score > self.state["best_accuracy"]:
            self.state.update(best_accuracy=score, best_epoch=epoch, bad_epochs=0)
            self.folder.save_best(self, val_acc)
        else:
            self.state["bad_epochs"] += 1
        if self.schedule is not None:
            self.schedule.step(val_acc)
        self.folder.save_checkpoint(self)
        self.folder.write_metrics(self.state["history"])
        geometry_note = ("" if not measures.get("labelled") else
                         f" NME {measures['nme']:.4f} yaw/pitch/roll MAE {measures['yaw_mae']:.2f}"
                         f"/{measures['pitch_mae']:.2f}/{measures['roll_mae']:.2f}")
        if "presence_miss" in measures:
            geometry_note += (f" presence: faces missed {measures['presence_miss']:.4f}, "
                              f"non-faces taken {measures['presence_false']:.4f}")
        print(f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
              f"PublicTest loss {val_loss:.4f} acc {val_acc:.4f}{geometry_note} | {seconds:.1f}s "
              f"({row['images_per_second']:.0f} img/s) | best {self.state['best_accuracy']:.4f} "
              f"@ {self.state['best_epoch']}", flush=True)

    # -- what fit returns ------------------------------------------------------------------------
    def _report_complete_run(self, state):
        """What --resume says, and returns, for a run that has nothing left to do."""
        self.state = state
        best = (f"; best PublicTest accuracy {state['best_accuracy']:.4f} at epoch "
                f"{state['best_epoch']}, in {self.folder.best_path}" if state["best_epoch"] else "")
        print(f"{self.out} holds a complete run: {self.folder.why_complete(state)}{best}. Nothing "
              "to resume; to train again, start a new run with another --out (or --overwrite)")
        return self._result(already_complete=True)

    def _result(self, n_val=None, **extra):
        """What `fit` returns (and `emotion train` prints as JSON)."""
        best = self.state["best_accuracy"] if self.state["best_epoch"] else None
        return {"out": str(self.out), "best_publictest_accuracy": best,
                "best_epoch": self.state["best_epoch"], "epochs_done": self.state["epoch"],
                "validation_images": n_val, "interrupted": self.stop_requested, **extra}


def geometry_loss(geometry, targets, has):
    """The landmark and pose loss: the wing loss (nnlite.functional) of the head's 139
    normalised outputs against the teacher's, images without a teacher label left out.

    Units (emotion.face.geometry): points in crop widths, angles in 30 degrees. WING_W and
    WING_EPS are set in those units: the loss is logarithmic (strong gradients) for errors
    below WING_W, 2.4 pixels of a 48-pixel crop or 1.5 degrees, where the points of a good
    model sit, and linear (robust to the teacher's bad rows) above.
    """
    return F.wing_loss(geometry, targets, weight=has, width=WING_W, curvature=WING_EPS)


WING_W, WING_EPS = 0.05, 0.01


def presence_loss(presence, targets, device):
    """The presence head's loss: binary cross-entropy of its logits (N,) against `targets`
    (N,) host float32, 1 for a framed face and 0 for a crop that is not; the faces and the
    non-faces each weighted to a mean of their own (the batch holds far fewer non-faces,
    which must not count for less)."""
    faces = max(float(targets.sum()), 1.0)
    others = max(float(len(targets) - targets.sum()), 1.0)
    weight = np.where(targets == 1, 0.5 / faces, 0.5 / others).astype(np.float32)
    return F.binary_cross_entropy_with_logits(presence.reshape(presence.shape[0]),
                                              nnlite.to_device(targets, device),
                                              nnlite.to_device(weight, device))


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


def _progress(total, initial, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False)
