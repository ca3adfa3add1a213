"""`emotion batch`: a real Dask LocalCluster of 2 worker processes on loopback, over shared
media and two bad files, gives the same table as the files analysed one by one in this
process; a run killed mid-way and resumed gives it too; a scheduler that does not answer, or
an address where another server answers, is a one-line error; a file name that is not
UTF-8 is kept exactly. Videos are capped at a few frames (--max-frames) to keep this fast.
"""

import contextlib
import csv
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote_to_bytes

import cv2
import pandas as pd
import pyarrow.parquet as pq
import pytest

from emotion import cli
from emotion.io import rows as records
from emotion.batch import analyze, cluster
from emotion.batch.media import find_media
from tests.conftest import MEDIA, REPO

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(),
                                reason=f"shared test media not found at {MEDIA}")

MAX_FRAMES = "8"
GOOD = ["single_face.jpg", "woman_smiling_phone.mp4", "group_pan.mp4"]


def run_batch(*argv):
    """`emotion batch ARGV` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["batch", *map(str, argv)])
    assert "Traceback" not in err.getvalue()
    return code, err.getvalue()


def batch_process(*argv):
    """`emotion batch ARGV` as a process of its own (its own process group, to kill it whole)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "emotion", "batch", *map(str, argv)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def table(path) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A folder with the shared media in a subfolder (links), a corrupt image and a truncated
    video beside them, and a file that is neither (left out of a folder's search)."""
    root = tmp_path_factory.mktemp("archive")
    (root / "clips" / "more").mkdir(parents=True)
    for name in GOOD:
        (root / "clips" / ("more" if name.endswith(".mp4") else "") / name).symlink_to(MEDIA / name)
    (root / "corrupt.jpg").write_bytes(os.urandom(5000))
    video = (MEDIA / "woman_smiling_phone.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(video[: len(video) // 2])
    (root / "notes.txt").write_text("not media")
    # A video that decodes for 4 of the 16 frames it declares: its rows, and an error row.
    face = cv2.resize(cv2.imread(str(MEDIA / "single_face.jpg")), (192, 192))
    writer = cv2.VideoWriter(str(root / "cut.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (192, 192))
    for _ in range(16):
        writer.write(face)
    writer.release()
    data = (root / "cut.avi").read_bytes()
    (root / "cut.avi").write_bytes(data[: len(data) // 4])
    return root


@pytest.fixture(scope="module")
def sequential(archive, tmp_path_factory):
    """The reference: the same run, one file after another in this process (--workers 0)."""
    out = tmp_path_factory.mktemp("sequential") / "results.parquet"
    code, err = run_batch(archive, "--out", out, "--csv", out.with_suffix(".csv"),
                          "--workers", 0, "--max-frames", MAX_FRAMES)
    return code, err, out


def test_every_file_has_rows_and_the_bad_ones_an_error(archive, sequential):
    code, err, out = sequential
    assert code == 1  # two files failed
    df = table(out)
    assert list(df.columns) == ["file", "file_bytes", *records.COLUMNS, "error"]
    assert df.file_bytes.isna().all()  # every name here is UTF-8: `file` is exact
    assert sorted(set(df.file)) == sorted(str(m.name) for m in find_media([str(archive)]))
    assert len(set(df.file)) == 6  # notes.txt is not searched for
    errors = df[df.error.notna()]
    assert sorted(Path(f).name for f in errors.file) == ["corrupt.jpg", "cut.avi",
                                                          "truncated.mp4"]
    for name in ("corrupt.jpg", "truncated.mp4", "cut.avi"):
        assert any(line.startswith("emotion batch: error: ") and name in line
                   for line in err.splitlines())
    cut = df[df.file.str.endswith("cut.avi")]
    assert list(cut.frame[:-1]) == [0, 1, 2, 3] and cut.error[:-1].isna().all()
    assert "stopped at frame 4 of the 16" in cut.error.iloc[-1]
    good = df[df.error.isna() & ~df.file.str.endswith("cut.avi")]
    assert good.frame.notna().all() and good.track_id.notna().all()  # each has faces
    pan = good[good.file.str.endswith("group_pan.mp4")]
    assert sorted(set(pan.frame)) == list(range(int(MAX_FRAMES)))
    assert pan.groupby("frame").size().max() >= 5  # the group: five or six faces a frame
    assert (good[good.file.str.endswith(".jpg")].frame == 0).all()
    probabilities = good[list(records.COLUMNS[7:14])].to_numpy()
    assert abs(probabilities.sum(axis=1) - 1).max() < 2e-3  # rounded to 4 places
    # The table is sorted by (file, frame, track_id), whatever order the files finished in.
    assert df.equals(df.sort_values(["file", "frame", "track_id"], kind="stable")
                     .reset_index(drop=True))
    csv = pd.read_csv(out.with_suffix(".csv"), keep_default_na=False, na_values=[""])
    assert len(csv) == len(df) and list(csv.columns) == list(df.columns)


def test_the_cluster_gives_the_sequential_table(archive, sequential, tmp_path):
    out = tmp_path / "results.parquet"
    run = batch_process(archive, "--out", out, "--workers", 2, "--max-frames", MAX_FRAMES)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert "Traceback" not in err
    pd.testing.assert_frame_equal(table(out), table(sequential[2]))


def test_a_killed_run_resumed_gives_the_same_table(archive, sequential, tmp_path):
    out = tmp_path / "results.parquet"
    parts = Path(f"{out}.parts")
    run = batch_process(archive, "--out", out, "--workers", 0, "--max-frames", MAX_FRAMES)

    def succeeded():  # the failed files are retried on resume: wait for a file that worked
        return [p for p in parts.glob("*.parquet") if not p.name.endswith(".failed.parquet")]

    deadline = time.monotonic() + 60
    while not succeeded() and run.poll() is None:
        assert time.monotonic() < deadline, "no part appeared within 60 s"
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert 1 <= len(succeeded()) < 3 and not out.exists(), "the kill came too late to test"
    # Resumed on a cluster that was already running (--scheduler), as on a cluster of machines.
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        code, err = run_batch(archive, "--out", out, "--resume", "--max-frames", MAX_FRAMES,
                              "--scheduler", cluster.scheduler_address)
    assert code == 1
    assert "done before, skipped" in err
    pd.testing.assert_frame_equal(table(out), table(sequential[2]))
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_a_scheduler_that_does_not_answer_is_a_clear_error(archive, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "results.parquet"
    start = time.monotonic()
    code, err = run_batch(archive / "corrupt.jpg", "--out", out, "--connect-timeout", 1,
                          "--scheduler", f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - start < 15
    assert code == 1
    assert err.count("\n") == 1 and "no Dask scheduler answered within 1 s" in err
    assert not out.exists() and not Path(f"{out}.parts").exists()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # no request lines among the test's output
        pass


def test_a_scheduler_address_that_is_another_server_is_a_clear_error(tmp_path):
    # An HTTP server on loopback, as the scheduler's dashboard (8787) would be.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "results.parquet"
    # A process of its own: Dask's client, handed this address, used to hang for good.
    run = batch_process(MEDIA / "single_face.jpg", "--out", out, "--connect-timeout", 1,
                        "--scheduler", f"tcp://127.0.0.1:{server.server_address[1]}")
    try:
        _, err = run.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail("emotion batch did not stop within 30 s")
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 2
    assert err.count("\n") == 1 and "did not answer as a Dask scheduler" in err, err
    assert not out.exists() and not Path(f"{out}.parts").exists()


def test_a_real_scheduler_passes_the_check():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as local:
        cluster.check_scheduler(local.scheduler_address, 5)  # raises if it did not greet


def test_a_run_is_never_mixed_with_another(archive, sequential, tmp_path):
    _, _, out = sequential
    code, err = run_batch(archive, "--out", out, "--workers", 0)
    assert code == 2 and "already exists: pass --resume" in err
    code, err = run_batch(archive, "--out", out, "--workers", 0, "--resume", "--max-frames", 3)
    assert code == 2 and "other settings (max_frames differ)" in err
    code, err = run_batch(archive, "--out", out, "--workers", 0, "--resume", "--classify-every",
                          1, "--max-frames", MAX_FRAMES)
    assert code == 2 and "other settings (classify_every differ)" in err
    code, err = run_batch(archive, "--out", archive / "corrupt.jpg", "--workers", 0)
    assert code == 2 and "would destroy that input" in err
    code, err = run_batch(tmp_path / "missing.mp4", "--out", tmp_path / "r.parquet")
    assert code == 2 and "input not found" in err


def test_a_failed_file_is_retried_on_resume(archive, tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"not yet a photo")
    out = tmp_path / "results.parquet"
    assert run_batch(image, "--out", out, "--workers", 0)[0] == 1
    image.write_bytes((MEDIA / "single_face.jpg").read_bytes())  # a new size: a new key
    code, err = run_batch(image, "--out", out, "--workers", 0, "--resume")
    assert code == 0, err
    df = table(out)
    assert len(df) == 1 and df.error.isna().all() and df.emotion.notna().all()


def test_a_name_that_is_not_utf8_is_kept_exactly_through_resume(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    latin1 = os.fsencode(folder) + b"/caf\xe9.jpg"  # a photo named in Latin-1
    broken = os.fsencode(folder) + b"/bad\xff.jpg"  # ... and a corrupt one: its error row
    try:
        with open(latin1, "wb") as f:
            f.write((MEDIA / "single_face.jpg").read_bytes())
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")
    with open(broken, "wb") as f:
        f.write(os.urandom(2000))
    out, csv_out = tmp_path / "results.parquet", tmp_path / "results.csv"

    def names():
        """The table's names, each as its exact bytes, and the CSV's."""
        rows = pq.read_table(out).to_pylist()
        exact = [r["file_bytes"] if r["file_bytes"] is not None else os.fsencode(r["file"])
                 for r in rows]
        with open(csv_out, newline="", encoding="utf-8") as f:
            text = list(csv.DictReader(f))
        from_csv = [unquote_to_bytes(r["file_bytes"]) if r["file_bytes"]
                    else os.fsencode(r["file"]) for r in text]
        assert from_csv == exact
        return rows, exact

    # Through a cluster: the names travel to a worker process and back.
    code, err = run_batch(folder, "--out", out, "--csv", csv_out, "--workers", 1)
    assert code == 1 and "bad" in err  # the corrupt one failed, the photo did not
    rows, exact = names()
    assert exact == [broken, latin1]
    assert [r["file"] for r in rows] == [f"{folder}/bad\ufffd.jpg", f"{folder}/caf\ufffd.jpg"]
    assert rows[0]["error"] and rows[1]["error"] is None and rows[1]["emotion"]

    (folder / "plain.jpg").symlink_to(MEDIA / "single_face.jpg")
    code, err = run_batch(folder, "--out", out, "--csv", csv_out, "--resume", "--workers", 0)
    assert code == 1 and "1 file done before, skipped" in err  # the photo; bad is retried
    rows, exact = names()
    assert exact == [broken, latin1, os.fsencode(folder / "plain.jpg")]
    assert rows[2]["file_bytes"] is None  # an ordinary name is stored once


def test_a_file_without_faces_has_one_row_and_chunks_join_up(monkeypatch):
    builder = analyze.TableBuilder("blank.png")
    assert builder.table().to_pylist() == [{c: ("blank.png" if c == "file" else None)
                                            for c in analyze.columns()}]
    monkeypatch.setattr(analyze, "CHUNK_ROWS", 2)
    builder = analyze.TableBuilder("clip.mp4")
    rows = [{"frame": f, "track_id": t, "emotion": "happy"} for f in (2, 1, 0) for t in (2, 1)]
    for row in rows:
        builder.add([row])
    got = builder.table("stopped at frame 3").to_pylist()
    assert [(r["frame"], r["track_id"]) for r in got] == [
        (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (None, None)]
    assert got[-1]["error"] == "stopped at frame 3" and got[0]["error"] is None
