"""Regression tests for the bug hunt of issue 21, through the CLI where a user meets each one:
outputs never destroy an input, a bad --out name fails before anything is touched, a
diverged run is never saved, and a weight file with NaN is refused."""

import shutil

import numpy as np
import pytest

import nnlite
from emotion import models
from emotion.cli import main as cli_main
from emotion.predictor import shipped_weights_path
from tests.conftest import MEDIA
from tests.test_train_evaluate import tiny_csv

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found at {MEDIA}")


@needs_media
@pytest.mark.parametrize("out", [None, "same"])
def test_explain_never_writes_over_its_image(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "explain.png"  # the name of explain's default --out
    shutil.copy(MEDIA / "single_face.jpg", image)
    before = image.read_bytes()
    argv = ["explain", str(image)] + ([] if out is None else ["--out", str(image)])
    assert cli_main(argv) == 2
    assert "would destroy that input" in capsys.readouterr().err
    assert image.read_bytes() == before


@needs_media
def test_no_output_of_video_or_live_is_written_over_the_weight_file(tmp_path, capsys):
    weights = tmp_path / "mine.npz"
    shutil.copy(shipped_weights_path("compact"), weights)
    before = weights.read_bytes()
    clip = MEDIA / "woman_smiling_phone.mp4"
    for argv in (["video", clip, "--weights", weights, "--csv", weights],
                 ["video", clip, "--weights", weights, "--out", tmp_path / "a.mp4",
                  "--jsonl", weights],
                 ["live", "--source", clip, "--no-display", "--weights", weights,
                  "--jsonl", weights]):
        assert cli_main([str(a) for a in argv]) == 2
        assert "is the weight file" in capsys.readouterr().err
    assert weights.read_bytes() == before


@needs_media
@pytest.mark.parametrize("name", ["noext", "a.webm", "a.gif"])
def test_video_out_that_opencv_cannot_write_fails_before_the_table_is_touched(tmp_path, capsys,
                                                                              name):
    table = tmp_path / "faces.csv"
    table.write_text("precious\n")
    code = cli_main(["video", str(MEDIA / "woman_smiling_phone.mp4"), "--out",
                     str(tmp_path / name), "--csv", str(table)])
    assert code == 2 and ".mp4, .avi" in capsys.readouterr().err
    assert table.read_text() == "precious\n"
    assert not (tmp_path / name).exists()


def test_a_diverged_run_stops_and_saves_no_best(tmp_path, capsys):
    data = tiny_csv(tmp_path / "tiny.csv")
    code = cli_main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model",
                     "compact", "--epochs", "2", "--batch-size", "16", "--lr", "1e6", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "diverged" in err and "Traceback" not in err
    best = tmp_path / "run" / "best.npz"
    if best.exists():  # an epoch before the divergence: its weights must be finite
        arrays, _ = nnlite.serialization.load_arrays(best)
        assert all(np.isfinite(a).all() for a in arrays.values())


def test_a_weight_file_with_nan_is_refused(tmp_path, capsys):
    model = models.build("compact")
    first = model.parameters()[0]
    first.data[...] = np.nan
    path = tmp_path / "nan.npz"
    nnlite.save(model, path, meta={"model": "compact", "preprocess": {}})
    code = cli_main(["evaluate", "--weights", str(path), "--data", str(tiny_csv(tmp_path / "t.csv"))])
    err = capsys.readouterr().err
    assert code != 0 and "NaN or infinite" in err and "Traceback" not in err
