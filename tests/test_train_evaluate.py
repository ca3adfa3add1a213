"""Training and evaluation on real FER2013 rows (skipped with a reason when it is absent)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import nnlite
from emotion.cnn import models
from emotion.commands import train
from emotion.cli import main as cli_main
from emotion.errors import UserError
from emotion.commands.evaluate import classification_report
from emotion.cnn.classifier import EmotionClassifier, shipped_weights_path
from tests.conftest import FER2013_CSV

needs_fer2013 = pytest.mark.skipif(not FER2013_CSV.exists(),
                                   reason=f"FER2013 not found at {FER2013_CSV}")


def train_config(tmp_path, **overrides):
    config = dict(data=str(FER2013_CSV), model="compact", epochs=2, batch_size=64, lr=0.05,
                  optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=5e-4,
                  schedule="cosine", warmup=0, label_smoothing=0.0, class_weights=False,
                  no_augment=False, early_stopping=0, limit=192, seed=3, ferplus=None,
                  skip_bad_rows=False)
    config.update(overrides)
    return config


def run_trainer(tmp_path, config, resume=False):
    trainer = train.Trainer(config, tmp_path, train.choose_backend(None))
    return trainer, trainer.fit(resume=resume, progress=False)


def stop_after_steps(trainer, steps=1):
    """Make `trainer` ask to stop after `steps` training steps, as a first Ctrl-C would."""
    original_step, calls = trainer._step, {"n": 0}

    def step_then_stop(*args):
        original_step(*args)
        calls["n"] += 1
        if calls["n"] == steps:
            trainer.stop_requested = True

    trainer._step = step_then_stop


@needs_fer2013
def test_a_short_run_on_real_rows_lowers_the_loss(tmp_path):
    config = train_config(tmp_path, epochs=4, no_augment=True, limit=256)
    x, y, _, _, pre = train.load_splits(config)
    nnlite.seed(config["seed"])
    before = train.validation_loss(train.predict_logits(models.build("compact"), x), y)
    trainer, result = run_trainer(tmp_path, config)
    after = train.validation_loss(train.predict_logits(trainer.model, x), y)
    print(f"training-set loss {before:.3f} -> {after:.3f}")
    assert after < before - 0.1
    for name in ["best.npz", "last.npz", "metrics.csv", "curves.png"]:
        assert (tmp_path / name).exists(), name
    assert len((tmp_path / "metrics.csv").read_text().strip().splitlines()) == 1 + 4
    meta = nnlite.read_meta(tmp_path / "best.npz")
    assert meta["model"] == "compact" and "preprocess" in meta


@needs_fer2013
def test_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path):
    config = train_config(tmp_path)
    full, _ = run_trainer(tmp_path / "full", config)

    interrupted = train.Trainer(config, tmp_path / "cut", train.choose_backend(None))
    stop_after_steps(interrupted, 4)  # in the second epoch (3 batches per epoch)
    result = interrupted.fit(progress=False)
    assert result["interrupted"] and result["epochs_done"] == 1
    resumed, result = run_trainer(tmp_path / "cut", config, resume=True)
    assert result["epochs_done"] == 2 and not result["interrupted"]
    for (name, a), (_, b) in zip(full.model.state_dict().items(),
                                 resumed.model.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert full.state["history"][-1]["val_accuracy"] == resumed.state["history"][-1]["val_accuracy"]


def test_classification_report_counts():
    report = classification_report([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], num_classes=3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    angry = report["per_class"]["angry"]
    assert angry["precision"] == pytest.approx(0.5) and angry["recall"] == pytest.approx(0.5)


def test_missing_weights_are_a_clear_error(tmp_path, capsys):
    code = cli_main(["evaluate", "--weights", str(tmp_path / "none.npz")])
    assert code != 0
    assert "weight file not found" in capsys.readouterr().err


@needs_fer2013
@pytest.mark.skipif(not shipped_weights_path().exists(), reason="no shipped weights yet")
def test_shipped_weights_reach_their_marks_on_privatetest(tmp_path, capsys):
    """The default weights against the labels they learned (FER+'s majority: 80%, where the
    README measured 83.70%), and the FER2013-trained ones against FER2013's (60%; 69.46%)."""
    from emotion.training.data.ferplus import find_ferplus_beside

    for weights, labels, mark in (("default", "ferplus", 0.80),
                                  ("default_fer2013", "fer2013", 0.60)):
        if labels == "ferplus" and find_ferplus_beside(FER2013_CSV) is None:
            continue  # (no FER+ file beside FER2013: the FER2013 half still runs)
        code = cli_main(["evaluate", "--data", str(FER2013_CSV), "--split", "PrivateTest",
                         "--weights", weights, "--labels", labels, "--out", str(tmp_path),
                         "--json", "--overwrite"])
        assert code == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        scores = report.get(labels, report)
        print(f"{weights}: PrivateTest accuracy {scores['accuracy']:.4f} against {labels}")
        assert scores["count"] == (3350 if labels == "ferplus" else 3589)
        assert scores["accuracy"] >= mark
    assert (tmp_path / "confusion_PrivateTest.png").exists()


@needs_fer2013
def test_the_real_time_default_is_at_least_as_accurate_as_the_compact_weights(tmp_path, capsys):
    # The rule that made the real-time weights the default of live / video / serve (README),
    # scored against the labels they learned (FER+'s majority for weights trained on FER+).
    from emotion.cnn.classifier import EmotionClassifier
    from emotion.training.data.ferplus import find_ferplus_beside
    from emotion.video.pipeline import VIDEO_WEIGHTS

    labels = EmotionClassifier.load(VIDEO_WEIGHTS, "numpy").labels
    ferplus = labels.startswith("ferplus")
    if ferplus and find_ferplus_beside(FER2013_CSV) is None:
        pytest.skip(f"{VIDEO_WEIGHTS} learned FER+ labels and no FER+ file is beside {FER2013_CSV}")
    accuracy = {}
    for weights in (VIDEO_WEIGHTS, "compact"):
        code = cli_main(["evaluate", "--data", str(FER2013_CSV), "--split", "PrivateTest",
                         "--weights", weights, "--out", str(tmp_path), "--json",
                         "--labels", "ferplus" if ferplus else "fer2013"])
        assert code == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        accuracy[weights] = report["ferplus"]["accuracy"] if ferplus else report["accuracy"]
    assert accuracy[VIDEO_WEIGHTS] >= accuracy["compact"], accuracy


def test_shipped_classifier_loads_without_flags():
    if not shipped_weights_path().exists():
        pytest.skip("no shipped weights yet")
    classifier = EmotionClassifier.load()
    probs = classifier.predict_faces([np.full((60, 50), 128, np.uint8)])
    assert probs.shape == (1, 7) and probs.dtype == np.float32
    assert abs(float(probs.sum()) - 1.0) < 1e-4


@needs_fer2013
def test_resume_with_other_settings_is_a_clear_error(tmp_path):
    config = train_config(tmp_path, epochs=1, limit=64)
    run_trainer(tmp_path, config)
    changed = dict(config, batch_size=32, lr=0.2)
    with pytest.raises(UserError, match="--batch-size 32 .*the run used 64"):
        run_trainer(tmp_path, changed, resume=True)


# -- the command line on tiny CSVs: clear errors, nothing lost -------------------------------------
def tiny_csv(path, usage=(("Training", 48), ("PublicTest", 16), ("PrivateTest", 16)),
             header="emotion,pixels,Usage"):
    """A small FER2013-style CSV of random images: `usage` gives (split, rows) pairs; a
    header without Usage writes two-column rows."""
    rng = np.random.default_rng(0)
    lines = [header]
    for split, count in usage:
        for i in range(count):
            pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
            lines.append(f"{i % 7},{pixels}" + (f",{split}" if "Usage" in header else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def train_cli(data, out, *extra):
    return cli_main(["train", "--data", str(data), "--out", str(out), "--model", "compact",
                     "--epochs", "1", "--batch-size", "32", "--quiet", *extra])


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMOTION_DATA", raising=False)


@pytest.mark.parametrize("usage, missing, has", [
    ((), "Training", "it has no usable rows at all"),
    ((("Training", 20),), "PublicTest", "it has: Training 20"),
])
def test_train_names_a_missing_split(tmp_path, capsys, private_cache, usage, missing, has):
    data = tiny_csv(tmp_path / "f.csv", usage)
    assert train_cli(data, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert f"f.csv has no {missing} rows ({has}" in err and "Usage column" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_evaluate_names_a_missing_split(tmp_path, capsys, private_cache):
    data = tiny_csv(tmp_path / "f.csv", (("Training", 20), ("PublicTest", 6)))
    code = cli_main(["evaluate", "--data", str(data), "--weights", "compact",
                     "--out", str(tmp_path / "reports")])
    assert code == 2
    err = capsys.readouterr().err
    assert "has no PrivateTest rows (it has: Training 20, PublicTest 6)" in err
    assert "--split" in err


def test_preprocessing_an_empty_batch_gives_an_empty_batch():
    from emotion.cnn.preprocess import PreprocessConfig, preprocess

    for config in (PreprocessConfig(), PreprocessConfig(equalize=True)):
        out = preprocess(np.zeros((0, 48, 48), np.uint8), config)
        assert out.shape == (0, 1, 48, 48) and out.dtype == np.float32


@pytest.mark.parametrize("option, value, wanted", [
    ("--batch-size", "0", "an integer >= 1"),
    ("--batch-size", "-5", "an integer >= 1"),
    ("--epochs", "0", "an integer >= 1"),
    ("--limit", "-1", "an integer >= 0"),
    ("--early-stopping", "-1", "an integer >= 0"),
    ("--lr", "-1", "a number > 0"),
    ("--lr", "nan", "a number > 0"),
    ("--momentum", "2", "a number >= 0 and < 1"),
    ("--weight-decay", "-1", "a number >= 0"),
    ("--label-smoothing", "1.5", "a number >= 0 and < 1"),
    ("--seed", "-1", "an integer >= 0"),
])
def test_train_options_out_of_range_fail_at_parsing(tmp_path, capsys, option, value, wanted):
    with pytest.raises(SystemExit) as exit_:
        train_cli(tmp_path / "never-read.csv", tmp_path / "run", option, value)
    assert exit_.value.code == 2
    assert f"argument {option}: must be {wanted}, got {value}" in capsys.readouterr().err


def test_evaluate_batch_size_and_split_are_checked_at_parsing(tmp_path, capsys):
    for option, value, message in [("--batch-size", "0", "must be an integer >= 1"),
                                   ("--split", "Validation", "unknown split 'Validation'")]:
        with pytest.raises(SystemExit) as exit_:
            cli_main(["evaluate", "--data", str(tmp_path / "never-read.csv"), option, value])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_config_out_of_range_is_refused_by_the_trainer_too(tmp_path):
    config = train_config(tmp_path, batch_size=0)
    with pytest.raises(UserError, match="batch_size must be an integer >= 1, got 0"):
        train.Trainer(config, tmp_path, "numpy")


def test_limit_says_how_many_validation_images_it_used(tmp_path, capsys, private_cache):
    data = tiny_csv(tmp_path / "f.csv")
    assert train_cli(data, tmp_path / "run", "--limit", "3") == 0
    out = capsys.readouterr().out
    assert "training on 3 Training images, validating on 1 PublicTest image (--limit 3)" in out
    assert json.loads(out.strip().splitlines()[-1])["validation_images"] == 1


def test_bad_output_paths_fail_before_the_work(tmp_path, capsys, monkeypatch, private_cache):
    from emotion.commands import evaluate

    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran although its output path is bad")

    monkeypatch.setattr(evaluate, "evaluate", must_not_run)
    a_file = tmp_path / "afile"
    a_file.write_text("keep me")
    base = ["evaluate", "--data", str(tmp_path / "f.csv"), "--weights", "compact"]
    cases = [(["--json", str(tmp_path / "nodir" / "r.json"), "--out", str(tmp_path / "r")],
              "does not exist"),
             (["--out", str(a_file)], "is a file, not a folder"),
             (["--out", str(a_file / "sub")], "is a file, so no folder can be made under it")]
    for extra, message in cases:
        assert cli_main(base + extra) == 2
        assert message in capsys.readouterr().err
    data = tmp_path / "f.csv"
    data.write_text("keep me too")
    assert cli_main(base + ["--json", str(data)]) == 2  # the report over the data set
    assert "is the --data file" in capsys.readouterr().err and data.read_text() == "keep me too"
    monkeypatch.setattr(train, "load_splits", must_not_run)
    assert train_cli(tmp_path / "f.csv", a_file) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"


def test_an_existing_run_is_kept_unless_resumed_or_overwritten(tmp_path, capsys, private_cache):
    data, out = tiny_csv(tmp_path / "f.csv"), tmp_path / "run"
    assert train_cli(data, out) == 0
    before = {name: (out / name).read_bytes() for name in ("best.npz", "last.npz", "metrics.csv")}
    capsys.readouterr()

    assert train_cli(data, out, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "already holds a run (best.npz, last.npz, metrics.csv" in err
    assert "epoch 1 of 1 done" in err
    assert "--resume" in err and "--out" in err and "--overwrite" in err
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing lost

    assert train_cli(data, out, "--seed", "1", "--overwrite") == 0
    assert (out / "last.npz").read_bytes() != before["last.npz"]
    assert nnlite.read_meta(out / "last.npz")["config"]["seed"] == 1


def test_resuming_a_complete_run_says_so(tmp_path, capsys, private_cache):
    data, out = tiny_csv(tmp_path / "f.csv"), tmp_path / "run"
    assert train_cli(data, out) == 0
    capsys.readouterr()
    assert train_cli(data, out, "--resume") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "holds a complete run: epoch 1 of 1 is done" in lines[0]
    assert not any(line.startswith(("resuming", "epoch")) for line in lines)
    assert json.loads(lines[-1])["already_complete"] is True


def test_throughput_of_a_resumed_epoch_counts_only_the_images_it_processed(tmp_path,
                                                                            private_cache):
    data = tiny_csv(tmp_path / "f.csv", (("Training", 96), ("PublicTest", 8)))
    config = train_config(tmp_path, data=str(data), epochs=1, batch_size=32, limit=0)
    cut = train.Trainer(config, tmp_path / "run", "numpy")
    stop_after_steps(cut)  # after the first of the epoch's 3 batches
    assert cut.fit(progress=False)["interrupted"]
    resumed = train.Trainer(config, tmp_path / "run", "numpy")
    resumed.fit(resume=True, progress=False)
    row = resumed.state["history"][-1]
    # 64 images in this run's seconds, not the epoch's 96
    assert row["images_per_second"] * row["seconds"] == pytest.approx(64)


def test_evaluate_split_any_case_weights_as_named_and_random_split_noted(tmp_path, capsys,
                                                                        private_cache):
    data = tiny_csv(tmp_path / "f.csv")
    report_path = tmp_path / "r.json"
    assert cli_main(["evaluate", "--data", str(data), "--weights", "compact", "--split",
                     "privatetest", "--out", str(tmp_path / "reports"), "--json",
                     str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["split"] == "PrivateTest" and report["weights"] == "compact"
    # a report inside the --out folder that evaluate creates anyway: no need to create it first
    assert cli_main(["evaluate", "--data", str(data), "--weights", "compact", "--out",
                     str(tmp_path / "new"), "--json", str(tmp_path / "new" / "r.json")]) == 0
    assert (tmp_path / "new" / "r.json").exists()
    assert not report["split_drawn_at_random"]
    assert (tmp_path / "reports" / "confusion_PrivateTest.png").exists()
    capsys.readouterr()

    two_column = tiny_csv(tmp_path / "two.csv", (("", 70),), header="emotion,pixels")
    assert cli_main(["evaluate", "--data", str(two_column), "--out", str(tmp_path / "reports"),
                     "--json"]) == 0
    captured = capsys.readouterr()
    assert "does not name its splits, so PrivateTest here is a seeded random share" in captured.err
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["split_drawn_at_random"] and report["weights"] == "default"


# -- inference never imports training ------------------------------------------------------------
INFERENCE_MODULES = ("emotion.cnn.classifier", "emotion.commands.predict",
                     "emotion.commands.evaluate", "emotion.commands.live", "emotion.commands.video",
                     "emotion.commands.explain", "emotion.cnn.explain", "emotion.video.pipeline",
                     "emotion.cli", "emotion.video.loop", "emotion.io.rows",
                     "emotion.training.distill")
TRAINING_MODULES = ("emotion.commands.train", "emotion.training.runs")


def test_no_inference_module_imports_the_training_module():
    # A fresh interpreter: this test process has imported emotion.commands.train already.
    # Imported one at a time, so that a failure names the module that pulled training in.
    script = ("import importlib, sys\n"
              f"for name in {INFERENCE_MODULES!r}:\n"
              "    importlib.import_module(name)\n"
              f"    loaded = [m for m in {TRAINING_MODULES!r} if m in sys.modules]\n"
              "    if loaded:\n"
              "        sys.exit(f'{name} imports {loaded}')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_distilled_run_keeps_its_teacher_targets_for_resume(tmp_path, capsys, private_cache):
    data = tiny_csv(tmp_path / "f.csv", (("Training", 64), ("PublicTest", 8)))
    config = train_config(tmp_path, data=str(data), epochs=1, batch_size=32, limit=0,
                          teacher="compact", temperature=2.0, distill_weight=0.5, quiet=True)
    cut = train.Trainer(config, tmp_path / "run", "numpy")
    stop_after_steps(cut)  # after the first of the epoch's 2 batches
    assert cut.fit(progress=False)["interrupted"]
    assert "teacher: compact on 64 Training images" in capsys.readouterr().out
    targets = nnlite.serialization.load_arrays(tmp_path / "run" / "teacher.npz")[0]
    assert targets["probabilities"].shape == (64, 7)
    resumed = train.Trainer(config, tmp_path / "run", "numpy")
    result = resumed.fit(resume=True, progress=False)
    assert result["epochs_done"] == 1 and not result["interrupted"]
    assert "teacher:" not in capsys.readouterr().out  # read back, not computed again
    np.testing.assert_array_equal(resumed.soft_targets, targets["probabilities"])


def test_init_starts_from_the_weights_given_and_refuses_another_model(tmp_path, capsys,
                                                                      private_cache):
    data = tiny_csv(tmp_path / "f.csv")
    assert train_cli(data, tmp_path / "first") == 0
    first = tmp_path / "first" / "best.npz"
    config = train_config(tmp_path, data=str(data), epochs=1, batch_size=32, limit=0,
                          init=str(first))
    trainer = train.Trainer(config, tmp_path / "second", "numpy")
    started = {}
    original_step = trainer._step

    def record_then_stop(*args):  # the parameters as the first step finds them
        started.setdefault("params", [p.data.copy() for p in trainer.model.parameters()])
        trainer.stop_requested = True
        original_step(*args)

    trainer._step = record_then_stop
    trainer.fit(progress=False)
    reference = models.build("compact")
    nnlite.load(reference, first)
    for got, want in zip(started["params"], reference.parameters()):
        np.testing.assert_array_equal(got, want.data)
    assert f"starting from {first}" in capsys.readouterr().out

    assert train_cli(data, tmp_path / "third", "--init", "mobile_fer2013") == 2  # a mobile file
    err = capsys.readouterr().err
    assert "holds a 'mobile' model, not the 'compact' of --model" in err
    assert not (tmp_path / "third").exists()  # refused before anything was written
    assert train_cli(data, tmp_path / "fourth", "--init", str(tmp_path / "nothing.npz")) == 2
    assert "--init: weight file not found" in capsys.readouterr().err


# -- FER+: evaluate against both label sets, train on the votes ------------------------------------
def ferplus_beside(data_dir, usage_rows, majority_of):
    """data_dir/../ferplus/fer2013new.csv for a tiny CSV of `usage_rows` ((split, count)):
    `majority_of(split, i)` gives the i-th row's FER+ FER2013 class, or "tie" / "contempt"."""
    from emotion.training.data.dataset import FERPLUS_TO_FER2013
    from tests.test_data import write_ferplus

    rows = []
    for split, count in usage_rows:
        for i in range(count):
            votes = [0] * 10
            wanted = majority_of(split, i)
            if wanted == "tie":
                votes[0] = votes[1] = 4
            elif wanted == "contempt":
                votes[7] = 9
            else:
                votes[int(np.flatnonzero(FERPLUS_TO_FER2013 == wanted)[0])] = 7
                votes[8] = 1  # an unknown vote: dropped from the distribution
            rows.append((split, f"{split}{i}.png", *votes))
    (data_dir.parent / "ferplus").mkdir()
    return write_ferplus(data_dir.parent / "ferplus" / "fer2013new.csv", rows)


def test_evaluate_scores_the_same_predictions_against_both_label_sets(tmp_path, capsys,
                                                                      private_cache):
    from emotion.cnn.preprocess import preprocess
    from emotion.training.data import load_fer2013

    usage = (("Training", 8), ("PublicTest", 4), ("PrivateTest", 16))
    (tmp_path / "fer2013").mkdir()
    data = tiny_csv(tmp_path / "fer2013" / "fer2013.csv", usage)
    classifier = EmotionClassifier.load("compact", "numpy")
    images, labels = load_fer2013(data).split("PrivateTest")
    predicted = classifier.predict_batch(preprocess(images, classifier.preprocess_config)).argmax(1)

    # FER+ agrees with the model on rows 0-7, disagrees on 8-11; 12-13 tie, 14-15 contempt
    def majority_of(split, i):
        if split != "PrivateTest":
            return 6
        return (int(predicted[i]) if i < 8 else (int(predicted[i]) + 1) % 7 if i < 12
                else "tie" if i < 14 else "contempt")

    ferplus_beside(data.parent, usage, majority_of)
    report_path = tmp_path / "r.json"
    assert cli_main(["evaluate", "--data", str(data), "--weights", "compact", "--backend",
                     "numpy", "--out", str(tmp_path / "reports"), "--json", str(report_path),
                     "--quiet"]) == 0  # FER+ found in ../ferplus/: both by default
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["scored_against"] == ["fer2013", "ferplus"]
    assert report["model_labels"] == "ferplus-majority"  # the shipped compact weights
    expected_fer2013 = float((predicted == labels).mean())
    assert report["fer2013"]["accuracy"] == pytest.approx(expected_fer2013)
    assert report["accuracy"] == report["fer2013"]["accuracy"] and report["count"] == 16
    assert report["ferplus"]["count"] == 12 and report["ferplus"]["left_out"] == 4
    assert report["ferplus"]["accuracy"] == pytest.approx(8 / 12)
    assert "against FER+ majority labels (12 images; 4 faces without a 7-class majority" in out
    assert "learned ferplus-majority labels" in out
    for name in ("confusion_PrivateTest.png", "confusion_PrivateTest_ferplus.png"):
        assert (tmp_path / "reports" / name).exists()

    assert cli_main(["evaluate", "--data", str(data), "--weights", "compact", "--backend",
                     "numpy", "--out", str(tmp_path / "reports"), "--json", "--quiet",
                     "--labels", "fer2013"]) == 0
    only = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert only["scored_against"] == ["fer2013"] and "ferplus" not in only

    # --labels ferplus without a FER+ file anywhere: one clear sentence, exit 2
    (tmp_path / "other").mkdir()
    lone = tiny_csv(tmp_path / "other" / "f.csv", usage)
    assert cli_main(["evaluate", "--data", str(lone), "--weights", "compact", "--backend",
                     "numpy", "--out", str(tmp_path / "reports"), "--labels", "ferplus",
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--labels ferplus scores against FER+'s labels" in err and "Traceback" not in err


def test_train_on_ferplus_votes_records_the_labels_and_resumes_only_with_them(tmp_path, capsys,
                                                                             private_cache):
    usage = (("Training", 40), ("PublicTest", 8), ("PrivateTest", 4))
    (tmp_path / "fer2013").mkdir()
    data = tiny_csv(tmp_path / "fer2013" / "fer2013.csv", usage)
    ferplus = ferplus_beside(data.parent, usage,
                             lambda split, i: "tie" if i % 5 == 0 else i % 7)
    run = tmp_path / "run"
    assert train_cli(data, run, "--ferplus", str(ferplus), "--ferplus-targets", "votes",
                     "--backend", "numpy") == 0
    out = capsys.readouterr().out
    # the 8 ties are trained on too (the majority would have 32), validated on the majority
    assert "training on 40 Training images, validating on 6 PublicTest images" in out
    meta = nnlite.read_meta(run / "best.npz")
    assert meta["labels"] == "ferplus-votes"
    assert EmotionClassifier.load(str(run / "best.npz"), "numpy").labels == "ferplus-votes"
    from nnlite.serialization import load_arrays

    assert load_arrays(run / "last.npz")[1]["config"]["ferplus_targets"] == "votes"
    # a resume must train on the same targets
    assert train_cli(data, run, "--ferplus", str(ferplus), "--backend", "numpy",
                     "--epochs", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert "--ferplus-targets 'majority' (the run used 'votes')" in err
    # votes without the votes, or with class weights: one sentence, exit 2
    assert train_cli(data, tmp_path / "r2", "--ferplus-targets", "votes") == 2
    assert "pass their file with --ferplus" in capsys.readouterr().err
    assert train_cli(data, tmp_path / "r3", "--ferplus", str(ferplus), "--ferplus-targets",
                     "votes", "--class-weights") == 2
    assert "--class-weights" in capsys.readouterr().err
    # the FER2013 labels and the majority name themselves too
    assert train_cli(data, tmp_path / "r4", "--limit", "8", "--backend", "numpy") == 0
    assert nnlite.read_meta(tmp_path / "r4" / "best.npz")["labels"] == "fer2013"
    assert train_cli(data, tmp_path / "r5", "--limit", "8", "--backend", "numpy",
                     "--ferplus", str(ferplus)) == 0
    assert nnlite.read_meta(tmp_path / "r5" / "best.npz")["labels"] == "ferplus-majority"
