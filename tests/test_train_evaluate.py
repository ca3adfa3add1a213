"""Training and evaluation on real FER2013 rows (skipped with a reason when it is absent)."""

import json

import numpy as np
import pytest

import nnlite
from emotion import models, train
from emotion.cli import main as cli_main
from emotion.evaluate import classification_report
from emotion.predictor import EmotionClassifier, shipped_weights_path
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


@needs_fer2013
def test_a_short_run_on_real_rows_lowers_the_loss(tmp_path):
    config = train_config(tmp_path, epochs=4, no_augment=True, limit=256)
    x, y, _, _, pre = train.load_splits(config)
    nnlite.seed(config["seed"])
    before = train._cross_entropy(train.predict_logits(models.build("compact"), x), y)
    trainer, result = run_trainer(tmp_path, config)
    after = train._cross_entropy(train.predict_logits(trainer.model, x), y)
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
    original_step = interrupted._step
    calls = {"n": 0}

    def step_then_stop(*args):
        original_step(*args)
        calls["n"] += 1
        if calls["n"] == 4:  # in the second epoch (3 batches per epoch)
            interrupted.stop_requested = True

    interrupted._step = step_then_stop
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
def test_shipped_weights_reach_at_least_60_percent_on_privatetest(tmp_path, capsys):
    code = cli_main(["evaluate", "--data", str(FER2013_CSV), "--split", "PrivateTest",
                     "--out", str(tmp_path), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print(f"shipped model: PrivateTest accuracy {report['accuracy']:.4f}")
    assert report["count"] == 3589
    assert report["accuracy"] >= 0.60
    assert (tmp_path / "confusion_PrivateTest.png").exists()


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
    with pytest.raises(train.UserError, match="--batch-size 32 .*the run used 64"):
        run_trainer(tmp_path, changed, resume=True)
