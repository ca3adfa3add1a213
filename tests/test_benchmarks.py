"""The benchmark scripts run end to end on tiny settings (what they measure is in RESULTS.md)."""

import json
from pathlib import Path

import pytest

from benchmarks import launch_overhead, per_face, profile_step, train_step
from nnlite import backends


@pytest.fixture
def threads():
    """A thread count every machine can give, and Numba's and BLAS's counts restored after
    (the scripts set them for the whole process)."""
    numba = pytest.importorskip("numba")
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    with threadpool_limits(limits=None):  # restores BLAS's thread count on leaving
        yield str(min(2, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(before)


def test_profile_step_accounts_for_the_step(tmp_path, capsys, threads):
    out = tmp_path / "profile.json"
    assert profile_step.main(["--backend", "numpy", "--batch", "2", "--reps", "2", "--settle", "0",
                              "--threads", threads, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["kernel"]: row for row in result["rows"]}
    assert rows["conv2d_forward"]["calls"] == 7 and rows["conv2d_backward"]["calls"] == 7  # compact
    assert rows["sgd_update"]["calls"] == 23  # one per parameter
    assert "im2col" not in rows  # called inside conv2d_forward: counted there, once
    # in each step the kernels took part of the step's time, not more
    assert len(result["steps_ms"]) == len(result["kernels_ms"]) == 2
    for step, kernels in zip(result["steps_ms"], result["kernels_ms"]):
        assert 0 < kernels <= step
    assert rows["outside the kernels"]["ms"] >= 0
    assert "conv2d_backward" in capsys.readouterr().out


def test_profile_step_names_an_unavailable_backend(capsys):
    if backends.available()["cuda"] is None:
        pytest.skip("the cuda backend is available here")
    assert profile_step.main(["--backend", "cuda"]) == 2
    assert "backend cuda is not available" in capsys.readouterr().err


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
def test_train_step_times_the_backends_side_by_side(tmp_path, threads):
    out = tmp_path / "steps.json"
    assert train_step.main(["--nets", "compact", "--backends", "numpy,numba", "--no-torch",
                            "--reps", "2", "--numpy-reps", "1", "--settle", "0",
                            "--threads", threads, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(row["backend"], row["case"]) for row in rows} == {
        (backend, case) for backend in ("numpy", "numba")
        for case in ("infer b1", "infer b64", "train b64")}
    for row in rows:  # the speed-up comes from the same interleaved run
        numpy_row = next(r for r in rows if r["backend"] == "numpy" and r["case"] == row["case"])
        assert row["speedup_vs_numpy"] == pytest.approx(numpy_row["ours_ms"] / row["ours_ms"])
        assert "torch_ms" not in row
        # numpy runs once per round at batch 64, the other side --reps times all the same
        slow = row["backend"] == "numpy" and row["case"] != "infer b1"
        assert row["reps"] == (1 if slow else 2)


def test_the_gpu_benchmarks_without_a_gpu_say_why(capsys):
    if backends.available()["cuda"] is None:
        pytest.skip("the cuda backend is available here")
    assert launch_overhead.main([]) == 2
    assert "launch_overhead needs the cuda backend" in capsys.readouterr().err
    assert train_step.main(["--device", "cuda", "--no-torch"]) == 2
    assert "--device cuda needs the cuda backend" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(backends.available()["cuda"] is not None, reason="needs a CUDA GPU")
def test_launch_overhead_times_every_case(tmp_path):
    out = tmp_path / "launch.json"
    assert launch_overhead.main(["--reps", "20", "--bn-reps", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 7 and all(row["synced_us"] > 0 for row in rows)
    assert all(row["issued_us"] > 0 for row in rows[:5])


def test_batch_reports_files_and_frames_per_second(tmp_path, capsys):
    from benchmarks import batch

    if not batch.MEDIA.is_dir():
        pytest.skip(f"shared test media not found at {batch.MEDIA}")
    out = tmp_path / "batch.json"
    assert batch.main(["--workers", "1", "--max-frames", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["frames"] == 3 * 1 + 3 * 2  # three photos, three clips cut at two frames
    assert row["files_per_s"] == pytest.approx(6 / row["seconds"], rel=0.01)
    assert not row["errors"] and "files/s" in capsys.readouterr().out


def test_classify_every_compares_each_setting_with_every_frame(tmp_path, capsys):
    import cv2

    from benchmarks import classify_every

    source = classify_every.MEDIA / "woman_talking.mp4"
    if not source.is_file():
        pytest.skip(f"shared test media not found at {classify_every.MEDIA}")
    capture, clip = cv2.VideoCapture(str(source)), tmp_path / "twelve.mp4"
    frames = [capture.read()[1] for _ in range(12)]
    capture.release()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = tmp_path / "every.json"
    assert classify_every.main(["--clips", str(clip), "--every", "2", "--json", str(out)]) == 0
    rows = {r["classify_every"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {1, 2}  # every frame is always run: it is the reference
    assert rows[1]["same_emotion"] == 1.0 and rows[1]["max_abs_dp"] == 0.0
    assert rows[2]["face_frames"] == rows[1]["face_frames"] > 0  # the same faces
    assert rows[2]["only_in_one_run"] == 0 and 0.0 <= rows[2]["same_emotion"] <= 1.0
    assert "| twelve.mp4 | 2 |" in capsys.readouterr().out


def test_classify_every_refuses_the_landmark_model_as_the_classifier(tmp_path):
    from benchmarks import classify_every

    with pytest.raises(SystemExit, match="landmark model"):
        classify_every.main(["--weights", "mobile_face", "--clips", str(tmp_path / "a.mp4")])


def test_landmarks_measures_both_methods_against_the_reference(tmp_path, capsys, threads):
    from benchmarks import landmarks
    from emotion.cnn.classifier import resolve_weights
    from emotion.video.pipeline import LANDMARK_WEIGHTS

    fixture = Path(__file__).parent / "fixtures" / "landmark_reference_single_face.json"
    if not (Path(landmarks.MEDIA) / "single_face.jpg").is_file():
        pytest.skip(f"shared test media not found at {landmarks.MEDIA}")
    if not fixture.is_file() or not resolve_weights(LANDMARK_WEIGHTS).is_file():
        pytest.skip("the reference fixture or the landmark weights are missing")
    out = tmp_path / "landmarks.json"
    assert landmarks.main(["--reference", str(fixture), "--reps", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # single_face.jpg's face and its mirror image, both measured and paired for the mirror test
    (source,) = result["per_source"]
    summary = result["overall"]
    assert source == "single_face.jpg" and summary == result["per_source"][source]
    assert summary["faces"] == 2 and summary["mirror"]["pairs"] == 1
    assert 0 < summary["nme_model"] < 1 and 0 < summary["eye_error_model"] < 1
    assert summary["pose_model"]["all_three"] == 1.0  # the model always answers the pose
    cost = result["cost"]
    assert cost["source"] == "single_face.jpg" and len(cost["median_ms"]) == 5
    assert all(ms > 0 for ms in cost["median_ms"].values())
    assert cost["geometry_minus_mobile_ms"] == pytest.approx(
        cost["median_ms"]["mobile_face predict_geometry"]
        - cost["median_ms"]["mobile predict_faces"], abs=2e-3)
    assert "NME" in capsys.readouterr().out


def test_landmarks_without_a_reference_says_how_to_make_one(tmp_path, capsys):
    from benchmarks import landmarks

    assert landmarks.main(["--reference", str(tmp_path / "none.json")]) == 2
    assert "benchmarks.landmark_reference" in capsys.readouterr().err


def test_video_ab_refuses_a_folder_that_is_not_a_source_tree(tmp_path, capsys):
    from benchmarks import video_ab

    assert video_ab.main(["--before", str(tmp_path)]) == 2
    assert "is not a source tree" in capsys.readouterr().err


def test_per_face_plan_times_planned_and_module_passes(tmp_path, capsys, threads):
    out = tmp_path / "plan.json"
    assert per_face.main(["--plan", "--rounds", "1", "--reps", "1", "--fault-passes", "2",
                          "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    labels = {f"{m} batch {n} {way}" for m in ("mobile_fer2013", "mobile_face") for n in (1, 6)
              for way in ("plan", "modules")}
    assert set(result["ms_per_pass"]) == labels
    assert all(ms > 0 for ms in result["ms_per_pass"].values())
    assert set(result["minor_faults_per_pass"]) == labels
    assert "faster" in capsys.readouterr().out
