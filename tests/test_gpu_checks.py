"""benchmarks/gpu_checks.sh, the one command a session runs on a lent GPU, on this machine:
it refuses to report success without a real GPU, its dry run produces the archive and the
summary a GPU run would, every step has a time limit, and every JSON names its device."""

import io
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from benchmarks import gpu_env
from nnlite import backends
from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_checks.sh"
REAL_GPU = backends.available()["cuda"] is None and not backends.SIMULATOR
STEPS = ["environment", "parity", "gradcheck", "launch_overhead", "train_step", "depthwise",
         "profile_step", "train_step_numba"]


def run_script(out, *args, timeout=600):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args, str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def archive(out):
    with tarfile.open(out / "gpu_checks.tar.gz") as tar:
        return {m.name.removeprefix("./"): (tar.extractfile(m).read() if m.isfile() else None)
                for m in tar.getmembers() if m.name not in (".", "./")}


@pytest.mark.skipif(REAL_GPU, reason="a real GPU is present here")
def test_without_a_real_gpu_the_script_stops_and_says_why(tmp_path):
    proc = run_script(tmp_path, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "gpu_checks: nnlite sees no real GPU: " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_checks.tar.gz", "summary.md"]
    summary = (tmp_path / "summary.md").read_text()
    assert "FAILED (status 3)" in summary and "| environment | FAILED (exit 3) |" in summary
    assert "| parity |" not in summary  # nothing ran after the refusal
    assert set(archive(tmp_path)) == {"environment.log", "environment.json"}


def test_the_environment_check_refuses_the_simulator_as_a_gpu(monkeypatch):
    monkeypatch.setattr(backends, "SIMULATOR", True)
    assert "simulator" in gpu_env.gpu_reason(dry_run=False)


@pytest.mark.skipif(REAL_GPU, reason="a real GPU is present here")
def test_the_environment_check_fails_without_a_real_gpu(capsys):
    assert gpu_env.main(["check"]) == 3
    err = capsys.readouterr().err
    assert "nnlite sees no real GPU: " + backends.available()["cuda"] in err


def _report(tmp_path, cases):
    """A JUnit report: cases are (module, name, outcome) with outcome passed/skipped/failed."""
    body = ""
    for module, name, outcome in cases:
        inner = {"passed": "", "skipped": '<skipped message="no real GPU: none here"/>',
                 "failed": '<failure message="boom"/>'}[outcome]
        body += f'<testcase classname="tests.{module}" name="{name}">{inner}</testcase>'
    path = tmp_path / "report.xml"
    path.write_text(f'<testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
    return str(path)


@pytest.mark.parametrize("cases,dry_run,status", [
    ([("test_backends", "a[cuda]", "passed")], False, 0),
    # the old script's "1 passed, 266 skipped": the GPU tests skipped is not a pass
    ([("test_backends", "a[cuda]", "passed"), ("test_cuda_gpu", "b", "skipped")], False, 1),
    ([("test_backends", "a[cuda]", "passed"), ("test_cuda_model_size", "c[big]", "skipped")], True, 0),
    ([("test_backends", "a[cuda]", "skipped")], True, 1),  # nothing passed
    ([("test_backends", "a[cuda]", "passed"), ("test_backends", "d", "failed")], False, 1),
])
def test_the_parity_verdict(tmp_path, capsys, cases, dry_run, status):
    args = ["parity", _report(tmp_path, cases), "--every-test-in", "tests/test_cuda_gpu.py",
            "tests/test_cuda_model_size.py"] + (["--dry-run"] if dry_run else [])
    assert gpu_env.main(args) == status
    if status:
        assert "parity: NOT a pass: " in capsys.readouterr().err


def test_every_step_has_a_limit_and_the_limits_fit_the_estimate():
    text = SCRIPT.read_text()
    gpu_part = text.split("# -- on the GPU")[1]
    steps = re.findall(r"^step (\w+) (\S+) ", gpu_part, flags=re.M)
    assert [name for name, _ in steps] == STEPS
    limits = [int(limit) for _, limit in steps]  # a number each, not a variable left unset
    assert f"capped at {sum(limits)} s in all" in text
    # a cold start (4 min), the whole run, and a rerun of it fit in 15 minutes of device time
    assert 4 * 60 + 2 * sum(limits) <= 15 * 60
    assert re.search(r"timeout --kill-after=\d+ \"\$limit\"", text)
    assert "pip install" not in text.replace("`pip install` of", "")  # installs nothing


def test_the_dry_run_produces_one_archive_and_a_summary(tmp_path):
    proc = run_script(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_checks.tar.gz", "summary.md"]
    summary = (tmp_path / "summary.md").read_text()
    assert "DRY RUN" in summary and "every step passed" in summary
    for name in STEPS:
        row = re.search(rf"^\| {name} \| ([^|]+) \| *(\d*) \| *(\d*) \|$", summary, flags=re.M)
        assert row, f"no summary row for {name}"
        verdict, seconds, limit = row.groups()
        if name == "launch_overhead":
            assert verdict.startswith("not run: ")  # said, not hidden
        else:
            assert verdict == "passed" and int(limit) > 0 and int(seconds) <= int(limit)
    files = archive(tmp_path)
    assert {f"{name}.log" for name in STEPS if name != "launch_overhead"} <= set(files)
    ran = re.search(r"parity: (\d+) passed, 0 failed", files["parity.log"].decode())
    assert ran and int(ran.group(1)) > 0  # the tiny cases ran, under the simulator
    jsons = sorted(name for name in files if name.endswith(".json"))
    assert jsons == ["depthwise.json", "environment.json", "profile_step.json",
                     "train_step.json", "train_step_numba_host.json"]
    for name in jsons:
        record = json.load(io.BytesIO(files[name]))["device"]
        for key in ("gpu", "driver", "cuda_runtime", "cupy", "numba_cuda", "torch"):
            assert key in record, (name, key)
    assert json.load(io.BytesIO(files["depthwise.json"]))["device"]["cuda_simulator"] is True
