"""`emotion evaluate`: accuracy, per-class precision/recall/F1 and a confusion matrix, against
FER2013's labels, FER+'s majority labels or both (the same predictions scored twice).

    emotion evaluate --split PrivateTest                    # the shipped weights
    emotion evaluate --weights runs/wide/best.npz --tta flip --json report.json
    emotion evaluate --labels ferplus --ferplus data/ferplus/fer2013new.csv.gz

--labels (default: both when a FER+ file is found, else fer2013). The FER+ file is --ferplus,
else fer2013new.csv(.gz) beside the FER2013 data: in its folder, its ferplus/ subfolder, or
data/ferplus/ beside data/fer2013/. FER+ scores only the faces whose majority is one of the 7
classes (a tie, or a majority for contempt, unknown or not-a-face, has no FER2013 class); the
faces left out are counted in the report.
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


LABEL_CHOICES = ("fer2013", "ferplus", "both")


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
    parser.add_argument("--labels", default=None, choices=LABEL_CHOICES,
                        help="score against FER2013's labels, FER+'s majority labels, or both "
                        "(default: both when the FER+ file is found, else fer2013)")
    parser.add_argument("--ferplus", default=None, metavar="FILE",
                        help="FER+ fer2013new.csv(.gz) (default: beside the data, e.g. "
                        "data/ferplus/ beside data/fer2013/)")
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
    dataset = load_fer2013(args.data, skip_bad_rows=args.skip_bad_rows)
    images, labels = dataset.split(split, required=True,
                                   hint=f"Choose another --split, or data with {split} rows.")
    label_sets, ferplus = scored_label_sets(args, dataset)
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
    predicted = probs.argmax(axis=1)
    scores = {}
    if "fer2013" in label_sets:
        scores["fer2013"] = classification_report(labels, predicted)
    if "ferplus" in label_sets:
        scores["ferplus"] = ferplus_report(ferplus, dataset, split, predicted)
    # The first label set scored is also the report's top level, as before --labels existed.
    report = {**scores[label_sets[0]], **scores, "scored_against": list(label_sets)}
    if getattr(args, "landmarks", None):
        report["landmarks"] = landmark_report(classifier, dataset, split, images, args)
    # weights: as the user named them (a shipped name or a path); weights_file: what that was.
    report.update(split=split, split_drawn_at_random=split in dataset.drawn_splits,
                  tta=args.tta, model=classifier.model_name, model_labels=classifier.labels,
                  weights=str(args.weights or "default"),
                  weights_file=str(resolve_weights(args.weights)), seconds=round(seconds, 2))
    return report


def scored_label_sets(args, dataset) -> tuple[tuple[str, ...], Path | None]:
    """(the label sets to score, in order, the FER+ file or None) from --labels and --ferplus:
    by default both when a FER+ file is given or found beside the data, else FER2013's."""
    from emotion.training.data.ferplus import find_ferplus, find_ferplus_beside

    wanted = getattr(args, "labels", None)
    given = getattr(args, "ferplus", None)
    ferplus = (find_ferplus(Path(given).expanduser()) if given
               else find_ferplus_beside(dataset.source))
    if wanted is None:
        wanted = "both" if ferplus is not None else "fer2013"
    if wanted != "fer2013" and ferplus is None:
        raise UserError(f"--labels {wanted} scores against FER+'s labels, but no "
                        f"fer2013new.csv(.gz) lies beside {dataset.source}: pass the file with "
                        "--ferplus FILE (from github.com/microsoft/FERPlus)")
    return {"fer2013": ("fer2013",), "ferplus": ("ferplus",),
            "both": ("fer2013", "ferplus")}[wanted], ferplus


def ferplus_report(ferplus, dataset, split, predicted) -> dict:
    """classification_report of the predictions against FER+'s 7-class majority, the faces
    without one left out and counted."""
    from emotion.training.data.ferplus import majority_for_split

    majority = majority_for_split(ferplus, dataset, split)
    has = majority >= 0
    return {**classification_report(majority[has], predicted[has]),
            "left_out": int((~has).sum()), "file": str(ferplus)}


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


LABEL_NAMES = {"fer2013": "FER2013 labels", "ferplus": "FER+ majority labels"}


def print_report(report, file=None):
    file = file or sys.stdout  # looked up at each call: a redirected sys.stdout is followed
    print(f"{report['model']} (learned {report.get('model_labels', 'fer2013')} labels) on "
          f"{report['split']}, TTA {report['tta']}", file=file)
    for name in report.get("scored_against", ["fer2013"]):
        scores = report.get(name, report)
        left_out = (f"; {scores['left_out']} faces without a 7-class majority left out"
                    if "left_out" in scores else "")
        print(f"against {LABEL_NAMES[name]} ({scores['count']} images{left_out}): accuracy "
              f"{scores['accuracy']:.4f}, macro F1 {scores['macro_f1']:.4f}", file=file)
        print(f"  {'class':10s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'support':>8s}",
              file=file)
        for cls, m in scores["per_class"].items():
            print(f"  {cls:10s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} "
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
                              ("--ferplus", getattr(args, "ferplus", None)),
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
    # One matrix per label set: confusion_PrivateTest.png (FER2013's labels, the name it always
    # had) and confusion_PrivateTest_ferplus.png.
    pngs = []
    for name in report["scored_against"]:
        suffix = "" if name == "fer2013" else f"_{name}"
        png = Path(args.out) / f"confusion_{report['split']}{suffix}.png"
        scores = report[name]
        plot_confusion_matrix(scores["confusion_matrix"], png,
                              f"{report['model']} ({report['model_labels']}) on "
                              f"{report['split']}, {LABEL_NAMES[name]}: accuracy "
                              f"{scores['accuracy']:.1%}")
        scores["confusion_png"] = str(png)
        pngs.append(str(png))
    report["confusion_png"] = pngs[0]
    if args.json == "-":
        print(json.dumps(report))
    else:
        print_report(report)
        print(f"confusion matrix: {', '.join(pngs)}")
        if args.json:
            write_atomically(args.json, json.dumps(report, indent=2))
            print(f"report: {args.json}")
    return 0

