"""Regression tests for the bug hunt of issue 21, through the CLI where a user meets each one:
outputs never destroy an input, a bad --out name fails before anything is touched, a
diverged run is never saved, and a weight file with NaN is refused."""

import shutil

import numpy as np
import pytest

import nnlite
from emotion.cnn import models
from emotion.cli import main as cli_main
from emotion.errors import UserError
from emotion.cnn.classifier import shipped_weights_path
from tests.conftest import MEDIA
from tests.test_train_evaluate import private_cache, tiny_csv  # noqa: F401 (a fixture)

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


# A learning rate of 1e6 is meant to overflow: NumPy's warnings about it are the point.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
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


# -- item 2: a resume reads the data the run was trained on ------------------------------------

def test_resume_on_other_data_is_refused_and_the_same_data_moved_resumes(tmp_path, capsys,
                                                                          private_cache):
    from emotion.commands import train
    from tests.test_train_evaluate import stop_after_steps, train_config

    data = tiny_csv(tmp_path / "a.csv", (("Training", 64), ("PublicTest", 8)))
    config = train_config(tmp_path, data=str(data), epochs=1, batch_size=32, limit=0)
    cut = train.Trainer(config, tmp_path / "run", "numpy")
    stop_after_steps(cut)  # after the first of the epoch's 2 batches
    assert cut.fit(progress=False)["interrupted"]
    last = tmp_path / "run" / "last.npz"
    before = last.read_bytes()

    # Fewer rows (the IndexError of the bug report), then as many rows with other pixels.
    other = tiny_csv(tmp_path / "b.csv", (("Training", 32), ("PublicTest", 8)))
    same_size = tmp_path / "c.csv"
    lines = data.read_text().splitlines()
    same_size.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    for path, says in ((other, "32 Training"), (same_size, "different content")):
        resumed = train.Trainer(dict(config, data=str(path)), tmp_path / "run", "numpy")
        with pytest.raises(UserError, match="cannot resume") as caught:
            resumed.fit(resume=True, progress=False)
        message = str(caught.value)
        assert says in message and str(path) in message and str(data) in message  # both named
        assert last.read_bytes() == before

    moved = tmp_path / "moved.csv"
    shutil.move(data, moved)
    config = dict(config, data=str(moved))
    resumed = train.Trainer(config, tmp_path / "run", "numpy")
    assert resumed.fit(resume=True, progress=False)["epochs_done"] == 1


# -- item 6: permission errors are one line ----------------------------------------------------

def _unprivileged():
    """A command prefix that runs a process without the right to ignore file permissions
    (root drops CAP_DAC_OVERRIDE with setpriv), or None when this machine cannot make one."""
    import os

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"]


def _run_unprivileged(args, cwd):
    import subprocess
    import sys

    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot make a file root may not read")
    return subprocess.run([*prefix, sys.executable, "-m", "emotion", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@needs_media
def test_permission_denied_is_one_line_naming_the_file(tmp_path):
    image = tmp_path / "photo.jpg"
    shutil.copy(MEDIA / "single_face.jpg", image)
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(MEDIA / "single_face.jpg", folder / "a.jpg")
    video = tmp_path / "clip.mp4"
    shutil.copy(MEDIA / "woman_smiling_phone.mp4", video)
    weights = tmp_path / "w.npz"
    shutil.copy(shipped_weights_path("compact"), weights)
    data = tiny_csv(tmp_path / "d.csv")
    cases = [
        (["predict", image], "cannot read image", image),
        (["predict", folder], "cannot list folder", folder),
        (["video", video, "--csv", tmp_path / "o.csv"], "cannot read video", video),
        (["predict", MEDIA / "single_face.jpg", "--weights", weights], "cannot read weight file",
         weights),
        (["evaluate", "--data", data], "cannot read data file", data),
    ]
    for path in (image, video, weights, data):
        path.chmod(0)
    folder.chmod(0)
    try:
        for args, says, path in cases:
            result = _run_unprivileged(args, tmp_path)
            lines = [l for l in result.stderr.splitlines() if "error" in l]
            assert result.returncode != 0, args
            assert "Traceback" not in result.stderr, result.stderr
            assert says in lines[0] and "permission denied" in lines[0], result.stderr
            assert path.name in lines[0]
    finally:
        folder.chmod(0o755)
    assert not (tmp_path / "o.csv").exists()


# -- item 9: predict --annotate checks its folder before the work ------------------------------

@needs_media
def test_predict_annotate_into_a_folder_it_cannot_write_fails_first(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = _run_unprivileged(["predict", MEDIA / "single_face.jpg", "--annotate", locked],
                                   tmp_path)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2
    assert "--annotate" in result.stderr and "no permission" in result.stderr
    assert "WARN" not in result.stderr and result.stdout == ""  # nothing classified
    assert list(locked.iterdir()) == []


# -- item 10: hand-made weight files ------------------------------------------------------------

@pytest.mark.parametrize("meta, fmt, says", [
    (np.array("{not json"), np.array(1), "__meta__ is not valid JSON"),
    (np.array("[1, 2]"), np.array(1), "__meta__ must be a JSON object"),
    (np.arange(3), np.array(1), "__meta__ must be one JSON string"),
    (np.array("{}"), np.array("one"), "__format__ must be one integer"),
    (np.array("{}"), np.array([1, 1]), "__format__ must be one integer"),
])
def test_hand_made_weight_files_give_clear_errors(tmp_path, capsys, meta, fmt, says):
    arrays = {k: v for k, v in models.build("compact").state_dict().items()}
    path = tmp_path / "hand.npz"
    np.savez(path, __meta__=meta, __format__=fmt, **arrays)
    assert cli_main(["predict", str(MEDIA / "single_face.jpg"), "--weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert says in err and str(path) in err and "Traceback" not in err

    # The same file as a checkpoint to resume.
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(path, run / "last.npz")
    data = tiny_csv(tmp_path / "t.csv")
    assert cli_main(["train", "--data", str(data), "--out", str(run), "--epochs", "1",
                     "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and says in err


# -- the extras -----------------------------------------------------------------------------

def test_predict_refuses_a_named_pipe_instead_of_hanging(tmp_path, capsys):
    import os

    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)
    assert cli_main(["predict", str(pipe), "--weights", "compact"]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_predict_names_a_url_as_given(capsys):
    url = "https://example.com/faces/a.jpg"
    assert cli_main(["predict", url, "--json", "--weights", "compact"]) == 1
    captured = capsys.readouterr()
    assert f"{url} is a URL" in captured.err
    assert '"file": "https://example.com/faces/a.jpg"' in captured.out


def test_warmup_longer_than_the_run_is_refused(tmp_path, capsys):
    data = tiny_csv(tmp_path / "t.csv")
    assert cli_main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs",
                     "2", "--warmup", "3"]) == 2
    assert "--warmup 3 is longer than the run" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_video_help_says_which_face_sizes_are_found(capsys):
    with pytest.raises(SystemExit):
        cli_main(["video", "--help"])
    assert "5% of the frame's short side" in " ".join(capsys.readouterr().out.split())
