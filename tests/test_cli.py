"""The `emotion` command itself: version, pipes, and messages that point the user the right way."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from emotion import cli

from emotion.video import pipeline

from emotion.commands import predict
from emotion.labels import EMOTIONS

from tests.conftest import MEDIA


class UniformClassifier:
    def predict_faces(self, crops):
        return np.full((len(crops), len(EMOTIONS)), 1 / len(EMOTIONS), np.float32)


@pytest.fixture
def fake_classifier(monkeypatch):
    monkeypatch.setattr(pipeline, "load_classifier", lambda weights=None, backend=None:
                        UniformClassifier())


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("emotion ")


def test_annotated_copies_never_overwrite_each_other_or_an_input(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    same_names = [a / "x.jpg", a / "x.png", b / "x.jpg"]
    assert list(predict.annotated_paths(tmp_path / "out", same_names).values()) == [
        tmp_path / "out" / name
        for name in ("x.annotated.png", "x.png.annotated.png", "x.jpg.annotated.png")]
    # annotating into the input folder, which holds an earlier x.annotated.png as an input
    inputs = [a / "x.jpg", a / "x.annotated.png"]
    targets = predict.annotated_paths(a, inputs)
    assert targets[inputs[0]] == a / "x.jpg.annotated.png"
    assert not set(targets.values()) & set(inputs)


def test_predict_writes_one_annotated_file_per_input_with_the_same_name(
        tmp_path, capsys, fake_classifier):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.full((40, 40), 90, np.uint8))
    code = cli.main(["predict", str(tmp_path / "d1"), str(tmp_path / "d2"),
                     "--annotate", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x.annotated.png", "x.png.annotated.png"]


def test_predict_points_a_video_to_the_video_command(tmp_path, capsys, fake_classifier):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 64)
    code = cli.main(["predict", str(clip)])
    err = capsys.readouterr().err
    assert code == 1 and "is a video: use `emotion video" in err and "Traceback" not in err


def test_an_unknown_weights_name_lists_the_shipped_ones(tmp_path, capsys):
    image = tmp_path / "gray.png"
    cv2.imwrite(str(image), np.full((40, 40), 90, np.uint8))
    code = cli.main(["predict", str(image), "--weights", "bogusname"])
    err = capsys.readouterr().err
    assert code == 2 and "'compact', 'compact_fer2013', 'default'" in err and "'mobile_face'" in err


def test_gradcheck_reports_an_unavailable_backend_as_an_emotion_error(capsys):
    if not cli_backend_unavailable("cuda"):
        pytest.skip("cuda is available here: nothing to refuse")
    code = cli.main(["gradcheck", "--backend", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("emotion gradcheck: error: backend 'cuda'")


def cli_backend_unavailable(name):
    import nnlite

    return nnlite.available()[name] is not None


@pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found at {MEDIA}")
@pytest.mark.parametrize("unbuffered", ["", "1"])  # written at the end, or line by line
def test_a_reader_that_has_gone_ends_the_command_quietly(unbuffered):
    # `emotion predict ... | head -1`, where head has already exited: every write to stdout
    # fails with a broken pipe, at the first print or at the final flush.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    try:
        result = subprocess.run([sys.executable, "-m", "emotion", "predict",
                                 str(MEDIA / "single_face.jpg"), "--weights", "compact"],
                                stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(write_end)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception" not in err


def test_a_backend_named_by_the_environment_is_reported_as_such(monkeypatch):
    from emotion.errors import UserError
    from emotion.cnn.classifier import choose_backend

    monkeypatch.setenv("NNLITE_BACKEND", "bogus")
    with pytest.raises(UserError, match="NNLITE_BACKEND=bogus: backend 'bogus'"):
        choose_backend(None)


def test_predict_takes_each_image_once_and_skips_its_own_annotated_copies(
        tmp_path, capsys, fake_classifier):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((40, 40), 90, np.uint8))
    for _ in range(2):  # the second run finds x.annotated.png beside x.png and leaves it out
        # (and replaces the first run's copy, which the output policy allows with --overwrite)
        code = cli.main(["predict", str(tmp_path), str(image), "--annotate", str(tmp_path),
                         "--overwrite"])
        out = capsys.readouterr().out
        assert code == 0 and out.count("x.png") == 1 and "annotated" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.annotated.png", "x.png"]
