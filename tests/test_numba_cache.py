"""Where the Numba backend caches its compiled kernels (nnlite.backends.numba.compile).

Each case runs a fresh Python on a copy of the nnlite package, as an installed package would
be, so that a cache written next to the source would show in the copy. The kernel they run
(ReLU, serial) compiles in seconds.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nnlite import backends

REPO = Path(__file__).resolve().parents[1]
WARNING = "nnlite: Numba's cache folder cannot be written"

pytestmark = pytest.mark.skipif(backends.available()["numba"] is not None,
                                reason="needs the numba backend")

# What each case runs: is Numba reported usable, does a kernel give the right values, and
# where did the cache go.
PROGRAM = """if True:
    {before}
    import numpy as np
    import nnlite
    from nnlite.backends.numba import compile as numba_compile, kernels as numba_kernels
    print("available", nnlite.available()["numba"])
    y = numba_kernels.relu_forward(np.array([-1.0, 2.0], np.float32))
    assert y.tolist() == [0.0, 2.0], y
    print("cache", numba_compile.CACHE_FOLDER)
"""


@pytest.fixture
def place():
    """A folder every user may read (pytest's own tmp_path is its owner's alone, which a test
    run as another user could not enter), with a copy of the nnlite package in it."""
    root = Path(tempfile.mkdtemp(prefix="nnlite-cache-test-"))
    root.chmod(0o755)
    shutil.copytree(REPO / "nnlite", root / "site" / "nnlite",
                    ignore=shutil.ignore_patterns("__pycache__"))
    yield root
    for folder, dirs, _ in os.walk(root):  # writable again, so that it can be removed
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    shutil.rmtree(root)


def _read_only(path):
    for folder, dirs, files in os.walk(path):
        for f in files:
            os.chmod(os.path.join(folder, f), 0o444)
    for folder, dirs, _ in sorted(os.walk(path), reverse=True):
        os.chmod(folder, 0o555)


def _run(place, env, before="", user=None):
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("NUMBA_") and k not in ("XDG_CACHE_HOME", "TMPDIR")}
    environ.update(PYTHONPATH=str(place / "site"), **env)
    result = subprocess.run([sys.executable, "-c", PROGRAM.format(before=before)], env=environ,
                            capture_output=True, text=True, timeout=600, user=user)
    assert result.returncode == 0, result.stderr
    return result


def _cache_files(folder):
    return [p for p in Path(folder).rglob("*") if p.suffix in (".nbi", ".nbc")]


def _an_unprivileged_user():
    """The name of a user who cannot write into read-only folders and can run this Python, or
    None (root writes anywhere; switching to another user needs root)."""
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return ""  # ourselves
    try:
        subprocess.run([sys.executable, "-c", "import numba"], user="nobody", check=True,
                       capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return "nobody"


def test_the_cache_goes_to_the_user_cache_folder_not_into_the_package(place):
    result = _run(place, {"XDG_CACHE_HOME": str(place / "cache")})
    assert "available None" in result.stdout
    assert f"cache {place / 'cache' / 'nnlite' / 'numba'}" in result.stdout
    assert _cache_files(place / "cache" / "nnlite" / "numba")
    assert not _cache_files(place / "site")
    assert WARNING not in result.stderr


def test_an_explicit_numba_cache_dir_wins(place):
    result = _run(place, {"XDG_CACHE_HOME": str(place / "cache"),
                          "NUMBA_CACHE_DIR": str(place / "mine")})
    assert f"cache {place / 'mine'}" in result.stdout
    assert _cache_files(place / "mine")
    assert not (place / "cache").exists()
    assert not _cache_files(place / "site")


@pytest.mark.parametrize("how", ["read-only", "not a folder"])
def test_no_writable_home_falls_back_to_a_private_temporary_folder(place, how):
    # A read-only install with no writable HOME: Numba used to stop with "cannot cache
    # function ... no locator available" while nnlite.available() said Numba works.
    user = None
    if how == "read-only":
        user = _an_unprivileged_user()
        if user is None:
            pytest.skip("needs a user who cannot write into read-only folders (root can), and "
                        "root to switch to one")
        home = place / "home"
        home.mkdir()
        _read_only(home)
        _read_only(place / "site")
    else:  # works for root too: a folder cannot be made inside a file
        home = place / "a-file"
        home.write_text("")
    tmp = place / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    result = _run(place, {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
                          "TMPDIR": str(tmp)}, user=user or None)
    assert "available None" in result.stdout
    assert result.stderr.count(WARNING) == 1, result.stderr
    private = next(tmp.iterdir())
    assert private.name.startswith("nnlite-numba")
    assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0
    assert f"cache {private}" in result.stdout
    assert _cache_files(private)
    assert not _cache_files(place / "site")


def test_with_no_writable_folder_at_all_the_kernels_run_uncached(place):
    home = place / "a-file"
    home.write_text("")
    result = _run(place, {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")},
                  before=f"import tempfile; tempfile.tempdir = {str(home / 'tmp')!r}")
    assert "available None" in result.stdout
    assert "cache None" in result.stdout
    assert result.stderr.count(WARNING) == 1, result.stderr
    assert "not cached" in result.stderr
    assert not _cache_files(place / "site")


def test_a_temporary_folder_that_others_can_write_is_refused(tmp_path, monkeypatch):
    # Numba's cache files are pickles: a folder that another user could fill is never used.
    from nnlite.backends.numba import compile as numba_compile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    private = numba_compile._private_temporary_folder()
    assert private is not None and Path(private).parent == tmp_path
    os.chmod(private, 0o777)
    assert numba_compile._private_temporary_folder() is None
    os.chmod(private, 0o700)
    assert numba_compile._private_temporary_folder() == private


def test_the_user_cache_folder_follows_xdg(tmp_path):
    from nnlite.backends.numba.compile import choose_cache_folder

    home = str(tmp_path / "home")
    assert choose_cache_folder({"HOME": home}) == (
        os.path.join(home, ".cache", "nnlite", "numba"), None)
    xdg = str(tmp_path / "xdg")
    assert choose_cache_folder({"HOME": home, "XDG_CACHE_HOME": xdg}) == (
        os.path.join(xdg, "nnlite", "numba"), None)
    # a relative XDG_CACHE_HOME is ignored, as the XDG specification says
    assert choose_cache_folder({"HOME": home, "XDG_CACHE_HOME": "relative"})[0] == (
        os.path.join(home, ".cache", "nnlite", "numba"))
