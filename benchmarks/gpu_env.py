"""What benchmarks/gpu_checks.sh runs on, checked before anything else runs, and its verdicts.

    python3 -m benchmarks.gpu_env check [--dry-run] [--json PATH]
    python3 -m benchmarks.gpu_env parity REPORT.xml [--dry-run] [--every-test-in FILE ...]

check    the versions the checks rely on (the lent machine's image: Python 3.12, NumPy 2.x,
         Numba with numba-cuda, CuPy for CUDA 13, PyTorch 2.11 for CUDA 13; nothing is
         installed, the project runs from the working tree), then whether nnlite sees a real
         GPU. Either missing: one sentence on stderr and status 3, so the script stops instead
         of reporting skipped tests as a pass. With --dry-run the CUDA simulator stands in
         for the GPU and a missing CuPy or PyTorch is only reported.
parity   a pytest JUnit report as a verdict: status 1 unless nothing failed, something passed,
         and (on a GPU) no test of the --every-test-in files was skipped; a GPU suite where
         every test skips would otherwise read "passed".
"""

import argparse
import platform
import sys
import xml.etree.ElementTree as ET

from benchmarks import CUPY_DISTRIBUTIONS, _version, device, machine, write_json

# distribution -> (why the checks need it, required on the GPU)
NEEDED = {
    "numpy": ("every array on the host", True),
    "numba": ("the CPU kernels, and the CUDA kernels' compiler", True),
    "numba-cuda": ("the Numba CUDA kernels (numba's own CUDA target is deprecated)", True),
    "cupy": ("the cuda backend's arrays and cuBLAS", True),
    "torch": ("the PyTorch + cuDNN reference of the timings", False),
}


def versions():
    found = {name: _version(name) for name in NEEDED if name != "cupy"}
    found["cupy"] = _version(*CUPY_DISTRIBUTIONS)
    return {"python": platform.python_version(), **found}


def problems(found, dry_run):
    """One sentence per missing or unusable requirement."""
    out = []
    if sys.version_info < (3, 10):
        out.append(f"Python {found['python']} is older than the project's 3.10")
    numpy = found["numpy"]
    if numpy is None or (int(numpy.split(".")[0]) < 2 and not dry_run):
        out.append(f"NumPy {numpy} is not the image's NumPy 2.x")
    for name, (why, required) in NEEDED.items():
        if found[name] is None and required and not (dry_run and name in ("cupy", "numba-cuda")):
            out.append(f"{name} is missing ({why})")
    return out


def gpu_reason(dry_run):
    """None when nnlite sees what the run needs (a real GPU; the simulator in a dry run)."""
    import nnlite
    from nnlite import backends

    reason = nnlite.available()["cuda"]
    if dry_run:
        return None if backends.SIMULATOR and reason is None else (
            "a dry run needs NUMBA_ENABLE_CUDASIM=1 set before Numba is imported")
    if backends.SIMULATOR:
        return "NUMBA_ENABLE_CUDASIM is set: the CUDA simulator, not a GPU"
    return reason


def check(args):
    found = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    missing = problems(found, args.dry_run)
    for name, (why, required) in NEEDED.items():
        if found[name] is None and not required:
            print(f"warning: {name} is missing ({why}): those columns will be empty")
    reason = gpu_reason(args.dry_run)
    if reason is None and not args.dry_run:
        import cupy  # noqa: F401  (loaded, so that device() names the GPU)
    record = device()
    print(f"device: {record}")
    if args.json:
        write_json(args.json, {"machine": machine(), "versions": found, "dry_run": args.dry_run,
                               "missing": missing, "no_gpu_reason": reason})
    if missing:
        print(f"gpu_checks: cannot run here: {'; '.join(missing)} (the script installs nothing)",
              file=sys.stderr)
    if reason is not None:
        print(f"gpu_checks: nnlite sees no real GPU: {reason}; nothing would run on one, so the "
              "checks stop here", file=sys.stderr)
    if missing or reason is not None:
        return 3
    print("dry run: the CUDA simulator and the CPU stand in for the GPU" if args.dry_run
          else f"GPU: {record['gpu']}, driver {record['driver']}, CUDA {record['cuda_runtime']}")
    return 0


def parity(args):
    root = ET.parse(args.report).getroot()
    cases = list(root.iter("testcase"))
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    passed = len(cases) - len(failed) - len(skipped)
    print(f"parity: {passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    modules = {path.removesuffix(".py").replace("/", ".") for path in args.every_test_in}
    must_run = [c for c in skipped if c.get("classname", "").split("::")[0] in modules
                or any(c.get("classname", "").startswith(m + ".") for m in modules)]
    verdict = []
    if failed:
        verdict.append(f"{len(failed)} failed: " + ", ".join(c.get("name") for c in failed[:5]))
    if passed == 0:
        verdict.append("nothing passed")
    if must_run and not args.dry_run:
        verdict.append(f"{len(must_run)} GPU tests skipped, e.g. {must_run[0].get('name')}: "
                       f"{must_run[0].find('skipped').get('message')}")
    if verdict:
        print(f"parity: NOT a pass: {'; '.join(verdict)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_env", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check")
    check_parser.add_argument("--dry-run", action="store_true")
    check_parser.add_argument("--json")
    parity_parser = commands.add_parser("parity")
    parity_parser.add_argument("report")
    parity_parser.add_argument("--dry-run", action="store_true")
    parity_parser.add_argument("--every-test-in", nargs="*", default=[])
    args = parser.parse_args(argv)
    return check(args) if args.command == "check" else parity(args)


if __name__ == "__main__":
    raise SystemExit(main())
