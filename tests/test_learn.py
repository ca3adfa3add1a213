"""The learning path cannot rot: every chapter of docs/learn runs top to bottom (its python
blocks in order, each compiled on its own as a notebook cell is, in one namespace), the
figures it draws match the committed ones, and the exercise checker tells a right answer
from a wrong one."""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from docs.learn import make_figures
from docs.learn.exercises import check, solutions
from tests.conftest import REPO

CHAPTERS = make_figures.CHAPTERS
FIGURES = REPO / "docs" / "learn" / "figures"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_path_has_its_chapters():
    assert [c.name[:2] for c in CHAPTERS] == [f"{i:02d}" for i in range(1, 14)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_and_its_figures_are_current(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LEARN_FIGURES", str(tmp_path))
    monkeypatch.setenv("LEARN_FACES", "300")  # chapter 8's size knob: cheap in CI
    monkeypatch.setenv("LEARN_EPOCHS", "1")
    make_figures.run_chapter(chapter)
    if chapter.name in make_figures.EXPENSIVE:
        return  # its figures come from minutes of training on the full knob
    for drawn in sorted(tmp_path.glob("*.npz")):
        committed = FIGURES / drawn.name
        assert committed.is_file(), f"{drawn.stem} is not committed: python -m docs.learn.make_figures"
        with np.load(drawn) as new, np.load(committed) as old:
            assert sorted(new) == sorted(old), f"{drawn.stem}: other arrays than committed"
            for key in new:
                scale = max(float(np.abs(old[key]).max()), 1e-6)
                assert new[key].shape == old[key].shape and np.allclose(
                    new[key], old[key], rtol=1e-4, atol=1e-5 * scale), (
                    f"figure {drawn.stem} is out of date ({key} differs): "
                    "python -m docs.learn.make_figures --cheap")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_suits_a_notebook_and_its_links_exist(chapter):
    text = chapter.read_text()
    for line, code in make_figures.python_blocks(chapter):
        compile(code, f"{chapter.name}:{line}", "exec")  # each block complete on its own
        assert not re.search(r"^\s*[%!]", code, re.M), f"{chapter.name}:{line}: IPython-only"
        assert "__file__" not in code, f"{chapter.name}:{line}: a notebook has no __file__"
    missing = [t for t in LINK.findall(text)
               if "://" not in t and not (chapter.parent / t).exists()]
    assert not missing, f"{chapter.name} links to files that do not exist: {missing}"


def test_every_committed_figure_has_its_arrays_and_a_chapter():
    pngs = {p.stem for p in FIGURES.glob("*.png")}
    arrays = {p.stem for p in FIGURES.glob("*.npz")}
    assert pngs == arrays
    drawn = set(re.findall(r'keep\(fig, "([^"]+)"', "".join(c.read_text() for c in CHAPTERS)))
    assert pngs == drawn


def test_the_exercise_checker_tells_right_from_wrong(capsys):
    assert check.check_avg_pool(solutions.avg_pool_backward) is None
    too_much = lambda gy, shape, k: np.repeat(np.repeat(gy, k, axis=2), k, axis=3)  # noqa: E731
    assert "central difference says" in check.check_avg_pool(too_much)
    wrong_shape = lambda gy, shape, k: gy  # noqa: E731
    assert "returned shape" in check.check_avg_pool(wrong_shape)
    # the exercise as shipped is blank: the command says so, exit 1, no traceback
    assert check.main(["avg_pool"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("not yet: avg_pool_backward is not written yet") and "Traceback" not in err


# The notebook run costs a kernel start (about a second) plus the chapter's own time, on top
# of the file run above, so CI runs it on six chapters that cover what a kernel changes: no
# __file__, figures returned to the kernel for display (04, 07), and paths read relative to
# the kernel's working folder (11 loads the shipped weights and docs/figures/synthetic_face.png;
# 13 finds FER2013 and FER+ by relative paths, or says they are missing). LEARN_NOTEBOOKS=all
# runs all thirteen (chapter 8 on the small knob below).
NOTEBOOK_CHAPTERS = ("01", "02", "04", "07", "11", "13")


def notebook_chapters():
    if os.environ.get("LEARN_NOTEBOOKS") == "all":
        return CHAPTERS
    return [c for c in CHAPTERS if c.name[:2] in NOTEBOOK_CHAPTERS]


@pytest.mark.parametrize("chapter", notebook_chapters(), ids=lambda p: p.stem)
def test_chapter_runs_in_a_jupyter_kernel(chapter, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs pip install -e .[dev]")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs pip install -e .[dev]")
    pytest.importorskip("ipykernel", reason="the notebook test needs pip install -e .[dev]")
    # A kernel spec of this very interpreter, first on JUPYTER_PATH, so the kernel imports
    # this checkout's nnlite whatever kernels the user has installed.
    spec = tmp_path / "kernels" / "learn-python"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "learn", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("LEARN_FACES", "300")  # the kernel inherits the same size knobs
    monkeypatch.setenv("LEARN_EPOCHS", "1")
    monkeypatch.delenv("LEARN_FIGURES", raising=False)
    blocks = [code for _, code in make_figures.python_blocks(chapter)]
    where = "import nnlite; print(nnlite.__file__)"  # which nnlite the chapter ran on
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(code) for code in blocks + [where]])
    # A kernel's working folder is the notebook's folder unless told; the chapters say to
    # start Jupyter in the repository root, so the test starts the kernel there.
    client = nbclient.NotebookClient(notebook, kernel_name="learn-python", timeout=300,
                                     resources={"metadata": {"path": str(REPO)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{chapter.name} fails in a Jupyter kernel: {err}", pytrace=False)
    assert all(o.output_type != "error" for cell in notebook.cells for o in cell.outputs)
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs).strip()
    assert Path(printed).is_relative_to(REPO), f"the kernel ran another nnlite: {printed}"


def test_the_max_pool_checker_tells_right_from_wrong(capsys):
    assert check.check_max_pool(solutions.max_pool_backward) is None
    # avg_pool's answer spreads the gradient over the window; max pooling gives it to one value
    spread = lambda gy, x, k: np.repeat(np.repeat(gy, k, axis=2), k, axis=3)  # noqa: E731
    assert "central difference says" in check.check_max_pool(spread)
    wrong_shape = lambda gy, x, k: gy  # noqa: E731
    assert "returned shape" in check.check_max_pool(wrong_shape)
    assert check.main(["max_pool"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("not yet: max_pool_backward is not written yet") and "Traceback" not in err


@pytest.mark.parametrize("missing", ["fer2013", "ferplus"])
def test_chapter_13_without_its_data_says_so_and_draws_nothing(missing, tmp_path, monkeypatch,
                                                               capsys):
    import docs.learn.plots  # noqa: F401  (imported before leaving the repository root)

    chapter = REPO / "docs" / "learn" / "13-label-noise.md"
    figures = tmp_path / "figures"
    figures.mkdir()
    monkeypatch.setenv("LEARN_FIGURES", str(figures))
    monkeypatch.chdir(tmp_path)  # no data/ here, nor ../shared/data/
    if missing == "fer2013":
        monkeypatch.delenv("EMOTION_DATA", raising=False)
    else:  # a FER2013 file with no fer2013new.csv(.gz) beside it
        alone = tmp_path / "fer2013"
        alone.mkdir()
        (alone / "fer2013.csv").write_text("emotion,pixels,Usage\n")
        monkeypatch.setenv("EMOTION_DATA", str(alone))
    namespace = make_figures.run_chapter(chapter)
    said = capsys.readouterr().out
    assert {"fer2013": "FER2013 not found", "ferplus": "FER+ not found"}[missing] in said
    assert "this chapter's blocks do nothing" in said
    assert namespace["HAVE_DATA"] is False and not any(figures.iterdir())
