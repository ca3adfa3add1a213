"""Regression tests for issue 29 (nothing lost, round two), through the CLI where a user meets
each one: one output policy for every command (an existing file is refused without
--overwrite, no input is ever an output or cleaned up), every OSError as one line, SIGTERM
handled as Ctrl-C, and the small messages of a new user's first hour."""

import errno
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nnlite
from emotion.cnn import models
from emotion.cli import main as cli_main
from emotion.cnn.classifier import shipped_weights_path
from tests.conftest import MEDIA
from tests.test_train_evaluate import private_cache, tiny_csv  # noqa: F401 (a fixture)

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found at {MEDIA}")
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None,
                                reason="needs the onnx package (pip install '.[onnx]')")
ROOT = Path(__file__).resolve().parents[1]


def one_error_line(err: str, says: str) -> None:
    lines = [line for line in err.splitlines() if "error" in line]
    assert "Traceback" not in err and len(lines) == 1 and says in lines[0], err


# -- item 1: batch --resume with nothing to resume refuses existing tables --------------------

@needs_media
def test_batch_resume_with_nothing_to_resume_keeps_existing_tables(tmp_path, capsys):
    out, csv = tmp_path / "precious.parquet", tmp_path / "notes.csv"
    out.write_bytes(b"precious")
    csv.write_text("notes\n")
    code = cli_main(["batch", str(MEDIA / "single_face.jpg"), "--out", str(out), "--csv",
                     str(csv), "--workers", "0", "--backend", "numpy", "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    one_error_line(err, "already exists: there is no run to resume")
    assert out.read_bytes() == b"precious" and csv.read_text() == "notes\n"
    assert not Path(f"{out}.parts").exists()


# -- item 2: train --overwrite never deletes what it starts from ------------------------------

@pytest.mark.parametrize("option", ["--init", "--teacher"])
def test_train_overwrite_never_removes_its_own_input(tmp_path, capsys, private_cache, option):
    run = tmp_path / "run"
    run.mkdir()
    best = run / "best.npz"
    shutil.copy(shipped_weights_path("compact"), best)
    before = best.read_bytes()
    code = cli_main(["train", "--data", str(tiny_csv(tmp_path / "t.csv")), "--out", str(run),
                     "--model", "compact", "--epochs", "1", "--quiet", "--overwrite",
                     option, str(best)])
    captured = capsys.readouterr()
    assert code == 2
    one_error_line(captured.err, f"{option} {best} is {best}, a file this run writes")
    assert "data:" not in captured.out  # refused before the data set was loaded
    assert best.read_bytes() == before


# -- item 3: export refuses an existing file, and writes one with the user's umask ------------

@needs_onnx
def test_export_refuses_an_existing_file_and_follows_the_umask(tmp_path, capsys):
    weights = tmp_path / "trained.npz"
    shutil.copy(shipped_weights_path("compact"), weights)
    before = weights.read_bytes()
    target = tmp_path / "model.onnx"
    target.write_bytes(b"my notes")
    assert cli_main(["export", "--weights", "compact", "--out", str(target)]) == 2
    one_error_line(capsys.readouterr().err, "already exists: pass --overwrite")
    assert target.read_bytes() == b"my notes"
    # Another trained weight file, not the input: refused just the same.
    assert cli_main(["export", "--weights", "compact", "--out", str(weights)]) == 2
    assert weights.read_bytes() == before
    # Even --overwrite never writes over the weight file being exported.
    assert cli_main(["export", "--weights", str(weights), "--out", str(weights),
                     "--overwrite"]) == 2
    assert "would destroy that input" in capsys.readouterr().err
    assert weights.read_bytes() == before

    old = os.umask(0o027)
    try:
        assert cli_main(["export", "--weights", "compact", "--out", str(target),
                         "--overwrite"]) == 0
        fresh = tmp_path / "fresh.onnx"
        assert cli_main(["export", "--weights", "compact", "--out", str(fresh)]) == 0
    finally:
        os.umask(old)
    assert target.read_bytes()[:8] != b"my notes"
    assert (fresh.stat().st_mode & 0o777) == 0o640 == (target.stat().st_mode & 0o777)


@needs_media
@pytest.mark.parametrize("command", ["video", "explain", "predict", "evaluate"])
def test_every_command_refuses_an_existing_output_without_overwrite(tmp_path, capsys,
                                                                    private_cache, command):
    photo, clip = MEDIA / "single_face.jpg", MEDIA / "woman_smiling_phone.mp4"
    existing = {"video": tmp_path / "rows.csv", "explain": tmp_path / "fig.png",
                "predict": tmp_path / "ann" / "single_face.annotated.png",
                "evaluate": tmp_path / "report.json"}[command]
    existing.parent.mkdir(exist_ok=True)
    existing.write_bytes(b"keep me")
    argv = {"video": ["video", str(clip), "--csv", str(existing), "--backend", "numpy"],
            "explain": ["explain", str(photo), "--out", str(existing)],
            "predict": ["predict", str(photo), "--annotate", str(existing.parent),
                        "--backend", "numpy"],
            "evaluate": ["evaluate", "--data", str(tiny_csv(tmp_path / "t.csv")),
                         "--weights", "compact", "--backend", "numpy", "--out",
                         str(tmp_path / "reports"), "--json", str(existing)]}[command]
    assert cli_main(argv) == 2
    one_error_line(capsys.readouterr().err, "already exists: pass --overwrite")
    assert existing.read_bytes() == b"keep me"


# -- item 6: an OSError is one line naming the file; long jobs check their outputs first -------

@needs_onnx
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("nnlite.serialization.os.fsync", full)  # the one atomic writer
    target = tmp_path / "model.onnx"
    assert cli_main(["export", "--weights", "compact", "--out", str(target)]) == 2
    one_error_line(capsys.readouterr().err, f"{target}: no space left on device")
    assert not list(tmp_path.iterdir())  # no temporary file left behind


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("argv, names", [
    (["evaluate", "--weights", "compact", "--json", "/proc/r.json"], "/proc"),
    (["evaluate", "--weights", "compact", "--out", "/proc/reports"], "/proc"),
    (["train", "--model", "compact", "--out", "/proc/run"], "/proc"),
])
def test_long_jobs_refuse_an_impossible_output_before_the_work(tmp_path, capsys, private_cache,
                                                               argv, names):
    data = tiny_csv(tmp_path / "t.csv")
    assert cli_main([*argv, "--data", str(data)]) == 2
    captured = capsys.readouterr()
    one_error_line(captured.err, names)
    assert "data:" not in captured.out and "accuracy" not in captured.out


# -- item 10: SIGTERM is Ctrl-C ----------------------------------------------------------------

def _start(tmp_path, *args):
    return subprocess.Popen([sys.executable, "-m", "emotion", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_media
def test_sigterm_leaves_video_out_a_readable_mp4(tmp_path):
    from emotion.video.sources import count_frames

    out = tmp_path / "annotated.mp4"
    run = _start(tmp_path, "video", MEDIA / "woman_talking.mp4", "--out", out, "--backend",
                 "numpy", "--classify-every", "1", "--detect-every", "1")
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size > 50_000) and run.poll() is None:
        assert time.monotonic() < deadline, "no frame written within 120 s"
        time.sleep(0.05)
    assert run.poll() is None, "the video ended before the signal: test a longer one"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert count_frames(out) > 0  # decoded: the file has its moov atom


def test_sigterm_saves_trains_partial_epoch(tmp_path, private_cache):
    data = tiny_csv(tmp_path / "t.csv", (("Training", 2000), ("PublicTest", 16)))
    out = tmp_path / "run"
    run = _start(tmp_path, "train", "--data", data, "--out", out, "--model", "compact",
                 "--epochs", "3", "--batch-size", "16", "--backend", "numpy", "--quiet")
    deadline = time.monotonic() + 120
    lines = []
    while not any(line.startswith("model:") for line in lines):
        assert time.monotonic() < deadline and run.poll() is None, lines
        lines.append(run.stdout.readline())
    time.sleep(2)  # a few of the epoch's 125 steps
    run.send_signal(signal.SIGTERM)
    stdout, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "interrupted: checkpoint saved" in stdout and "Traceback" not in err
    state = nnlite.serialization.load_arrays(out / "last.npz")[1]["state"]
    assert state["epoch"] == 0 and state["batch"] > 0  # the partial epoch, kept


# -- item 12: the small things -----------------------------------------------------------------

def test_evaluate_shows_progress(tmp_path, capsys, private_cache):
    data = tiny_csv(tmp_path / "t.csv")
    assert cli_main(["evaluate", "--data", str(data), "--weights", "compact", "--backend",
                     "numpy", "--tta", "tencrop", "--batch-size", "4",
                     "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    # 4 batches of 16 images, 10 crops: a bar of 40 steps (its last refresh may be skipped
    # when the run ends within tqdm's refresh interval, so any step of the 40 counts)
    assert "emotion evaluate" in err and "/40 [" in err


def test_train_checks_init_shapes_and_teacher_before_the_data(tmp_path, capsys, private_cache):
    data = tiny_csv(tmp_path / "t.csv")
    wrong = tmp_path / "wrong.npz"  # named compact, shaped mobile
    nnlite.save(models.build("mobile"), wrong, meta={"model": "compact", "preprocess": {}})
    truncated = tmp_path / "half.npz"
    whole = shipped_weights_path("compact").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    for option, path in (("--init", wrong), ("--teacher", truncated)):
        code = cli_main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                         "--model", "compact", "--epochs", "1", "--quiet", option, str(path)])
        captured = capsys.readouterr()
        assert code == 2
        one_error_line(captured.err, option)
        assert "data:" not in captured.out
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, says", [
    (["live", "--source", "", "--no-display"], "--source is empty"),
    (["batch", "http://host/x.jpg", "--out", "r.parquet"], "http://host/x.jpg is a URL"),
])
def test_messages_a_new_user_meets(tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    one_error_line(capsys.readouterr().err, says)


@needs_media
def test_batch_out_that_is_a_folder_suggests_a_parquet_name(tmp_path, capsys):
    assert cli_main(["batch", str(MEDIA / "single_face.jpg"), "--out", str(tmp_path),
                     "--workers", "0", "--backend", "numpy"]) == 2
    one_error_line(capsys.readouterr().err, f"e.g. {tmp_path / 'results.parquet'}")


def test_explain_help_names_its_default_figure(capsys):
    with pytest.raises(SystemExit):
        cli_main(["explain", "--help"])
    assert "explain.png in the current folder" in " ".join(capsys.readouterr().out.split())
