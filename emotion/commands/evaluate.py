"""`emotion evaluate`: accuracy, per-class precision/recall/F1 and a confusion matrix.

    emotion evaluate --split PrivateTest                    # the shipped weights
    emotion evaluate --weights runs/wide/best.npz --tta flip --json report.json
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from emotion.training.data import SPLITS
from emotion.errors import UserError
from emotion.labels import EMOTIONS
from emotion.io.outputs import (add_overwrite_argument, check_output_file, check_writable_soon,
                                check_output_folder, refuse_existing, same_file, write_atomically)
from emotion.commands.options import add_backend_option, add_weights_option, positive_int


def split_name(text: str) -> str:
    """argparse `type` for --split: a split name in any case -> its canonical spelling, so
    that a typo fails at once instead of after loading the weights and the data set."""
    for name in SPLITS:
        if text.strip().lower() == name.lower():
            return name
    raise argparse.ArgumentTypeError(f"unknown split {text!r}: choose {', '.join(SPLITS[:-1])} "
                                     f"or {SPLITS[-1]}")


def add_arguments(parser):
    parser.add_argument("--data", help="FER2013 csv(.gz), image folder or .npz "
                        "(default: $EMOTION_DATA, then data/)")
    parser.add_argument("--split", default="PrivateTest", type=split_name,
                        help="Training, PublicTest or PrivateTest, any case (default PrivateTest)")
    add_weights_option(parser)
    parser.add_argument("--tta", default="none", choices=["none", "flip", "tencrop"],
                        help="test-time augmentation: average over flips / ten crops")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the report as JSON (to stdout without PATH)")
    parser.add_argument("--out", default="reports", help="folder for the confusion-matrix PNG "
                        "(default: reports/ in the current folder; created if needed)")
    add_backend_option(parser)
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--ferplus", default=None)
    parser.add_argument("--skip-bad-rows", action="store_true")
    parser.add_argument("--landmarks", default=None, metavar="LABELS",
                        help="the landmark teacher's labels (.npz, see the README): for a model "
                        "with landmarks (mobile_face), also score its points (NME) and pose "
                        "(yaw/pitch/roll MAE) against them on the split")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_overwrite_argument(parser)


def classification_report(y_true, y_pred, num_classes=len(EMOTIONS)):
    """Accuracy, confusion matrix and per-class precision/recall/F1 (plain NumPy)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)  # rows: true class, columns: predicted
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros(num_classes), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_classes),
                   where=denominator > 0)
    per_class = {
        EMOTIONS[k]: {"precision": float(precision[k]), "recall": float(recall[k]),
                      "f1": float(f1[k]), "support": int(actual[k])}
        for k in range(num_classes)
    }
    return {
        "accuracy": float(true_positive.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1.mean()),
        "count": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def predict_probabilities(classifier, images, tta="none", batch_size=256, progress=False):
    """Class probabilities (N, 7) for preprocessed images, optionally averaged over TTA views
    (progress: a bar on stderr, one step per batch of a view: ten-crop takes a while)."""
    from tqdm import tqdm

    from emotion.training.augment import flip_tta, ten_crop

    if tta == "none":
        views = [images]
    elif tta == "flip":
        views = list(flip_tta(images))
    else:
        views = list(ten_crop(images))
    total = None
    steps = len(views) * -(-len(images) // batch_size)
    with tqdm(total=steps, desc="emotion evaluate", unit="batch", file=sys.stderr, leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
        for view in views:
            batches = []
            for i in range(0, len(view), batch_size):
                batches.append(classifier.predict_batch(view[i : i + batch_size]))
                bar.update(1)
            probs = np.concatenate(batches)
            total = probs if total is None else total + probs
    return total / len(views)


def plot_confusion_matrix(confusion, path, title):
    """Rows normalised to recall (so the diagonal reads as per-class accuracy), with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            color = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{normalised[i, j]:.2f}\n({confusion[i, j]})", ha="center",
                    va="center", fontsize=7, color=color)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure = io.BytesIO()  # drawn whole first: a full disk must not leave half a PNG
    fig.savefig(figure, dpi=120, format="png")
    plt.close(fig)
    write_atomically(path, figure.getvalue())


def evaluate(args):
    from emotion.training.data import load_fer2013
    from emotion.cnn.classifier import EmotionClassifier, resolve_weights
    from emotion.cnn.preprocess import preprocess

    split = split_name(args.split)  # also for an `args` built in Python, past argparse
    classifier = EmotionClassifier.load(args.weights, args.backend)
    dataset = load_fer2013(args.data, skip_bad_rows=args.skip_bad_rows, ferplus=args.ferplus)
    images, labels = dataset.split(split, required=True,
                                   hint=f"Choose another --split, or data with {split} rows.")
    if split in dataset.drawn_splits:
        # Not the official split: say so, or its accuracy could pass for a PrivateTest figure.
        print(f"note: {dataset.source.name} does not name its splits, so {split} here is a "
              f"seeded random share of each class ({len(labels)} images), not FER2013's own "
              f"{split}", file=sys.stderr)
    start = time.perf_counter()
    probs = predict_probabilities(classifier, preprocess(images, classifier.preprocess_config),
                                  args.tta, args.batch_size,
                                  progress=not getattr(args, "quiet", False))
    seconds = time.perf_counter() - start
    report = classification_report(labels, probs.argmax(axis=1))
    if getattr(args, "landmarks", None):
        report["landmarks"] = landmark_report(classifier, dataset, split, images, args)
    # weights: as the user named them (a shipped name or a path); weights_file: what that was.
    report.update(split=split, split_drawn_at_random=split in dataset.drawn_splits,
                  tta=args.tta, model=classifier.model_name,
                  weights=str(args.weights or "default"),
                  weights_file=str(resolve_weights(args.weights)), seconds=round(seconds, 2))
    return report


def landmark_report(classifier, dataset, split, images, args) -> dict:
    """The model's landmarks and pose against the teacher's labels of the same rows
    (emotion.training.landmark_labels): NME and yaw/pitch/roll MAE, over the labelled faces."""
    from emotion.cnn.preprocess import preprocess
    from emotion.face import geometry
    from emotion.training import landmark_labels

    if not classifier.has_geometry:
        raise UserError(f"--landmarks: the {classifier.model_name!r} weights give no landmarks "
                        "(a model with a geometry head does: --weights mobile_face)")
    labels = landmark_labels.load_labels(args.landmarks, dataset.source)
    points, pose, has = landmark_labels.targets_for(labels, dataset.rows[split])
    x = preprocess(images, classifier.preprocess_config)
    outputs = [classifier.predict_geometry_batch(x[i:i + args.batch_size])[1]
               for i in range(0, len(x), args.batch_size)]
    got_points, got_pose = geometry.decode(np.concatenate(outputs), images.shape[-1])
    return {"labels": str(args.landmarks),
            **landmark_labels.errors(got_points, got_pose, points, pose, has)}


def print_report(report, file=sys.stdout):
    print(f"{report['model']} on {report['split']} ({report['count']} images, TTA {report['tta']}): "
          f"accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}", file=file)
    print(f"{'class':10s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'support':>8s}", file=file)
    for name, m in report["per_class"].items():
        print(f"{name:10s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} "
              f"{m['support']:8d}", file=file)
    marks = report.get("landmarks")
    if marks and marks["labelled"]:
        print(f"landmarks against the teacher ({marks['labelled']} labelled faces): NME "
              f"{marks['nme']:.4f}, yaw/pitch/roll MAE {marks['yaw_mae']:.2f} / "
              f"{marks['pitch_mae']:.2f} / {marks['roll_mae']:.2f} degrees", file=file)


def run(args) -> int:
    # The outputs are checked first: a bad path must not cost a whole evaluation.
    # The confusion matrix in --out (a folder of reports) is redrawn each time; the files the
    # user names (--json) follow the output policy.
    check_output_folder(args.out, "--out", probe=True)
    if args.json not in (None, "-"):
        json_path, out = Path(args.json).resolve(), Path(args.out).resolve()
        if json_path == out:
            raise UserError(f"--json {args.json} is also the --out folder: name a file for the "
                            f"report, e.g. {Path(args.out) / 'report.json'}")
        for option, value in (("--weights", args.weights), ("--data", args.data),
                              ("--landmarks", getattr(args, "landmarks", None))):
            if value and same_file(args.json, value):
                raise UserError(f"--json {args.json} is the {option} file: writing the report "
                                f"there would destroy it; name another file")
        if json_path.parent == out:  # the report goes into --out, which is made for it anyway
            out.mkdir(parents=True, exist_ok=True)
        check_output_file(args.json, "--json")
        refuse_existing({"--json": args.json}, args.overwrite)
        check_writable_soon(json_path.parent, "--json")
    report = evaluate(args)
    png = Path(args.out) / f"confusion_{report['split']}.png"
    plot_confusion_matrix(report["confusion_matrix"], png,
                          f"{report['model']} on FER2013 {report['split']}: "
                          f"accuracy {report['accuracy']:.1%}")
    report["confusion_png"] = str(png)
    if args.json == "-":
        print(json.dumps(report))
    else:
        print_report(report)
        print(f"confusion matrix: {png}")
        if args.json:
            write_atomically(args.json, json.dumps(report, indent=2))
            print(f"report: {args.json}")
    return 0

