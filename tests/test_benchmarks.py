"""The benchmark scripts run end to end on tiny settings (what they measure is in RESULTS.md)."""

import json

import pytest

from benchmarks import profile_step, train_step
from nnlite import backends


def test_profile_step_accounts_for_the_whole_step(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert profile_step.main(["--backend", "numpy", "--batch", "2", "--reps", "1", "--settle", "0",
                              "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["kernel"]: row for row in result["rows"]}
    assert rows["conv2d_forward"]["calls"] == 7 and rows["conv2d_backward"]["calls"] == 7  # compact
    assert rows["sgd_update"]["calls"] == 23  # one per parameter
    assert "im2col" not in rows  # called inside conv2d_forward: counted there, once
    # one step timed: the kernels and the rest add up to it
    assert rows["outside the kernels"]["ms"] >= 0
    assert sum(row["ms"] for row in result["rows"]) == pytest.approx(result["step_ms"])
    assert "conv2d_backward" in capsys.readouterr().out


def test_profile_step_names_an_unavailable_backend(capsys):
    if backends.available()["cuda"] is None:
        pytest.skip("the cuda backend is available here")
    assert profile_step.main(["--backend", "cuda"]) == 2
    assert "backend cuda is not available" in capsys.readouterr().err


@pytest.mark.skipif(backends.available()["numba"] is not None, reason="needs the numba backend")
def test_train_step_times_the_backends_side_by_side(tmp_path):
    out = tmp_path / "steps.json"
    assert train_step.main(["--nets", "compact", "--backends", "numpy,numba", "--no-torch",
                            "--reps", "1", "--numpy-reps", "1", "--settle", "0",
                            "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(row["backend"], row["case"]) for row in rows} == {
        (backend, case) for backend in ("numpy", "numba")
        for case in ("infer b1", "infer b64", "train b64")}
    for row in rows:  # the speed-up comes from the same interleaved run
        numpy_row = next(r for r in rows if r["backend"] == "numpy" and r["case"] == row["case"])
        assert row["speedup_vs_numpy"] == pytest.approx(numpy_row["ours_ms"] / row["ours_ms"])
        assert "torch_ms" not in row
