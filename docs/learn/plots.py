"""What the chapters share: a figure to draw on, and `keep`, which saves it only when asked.

A chapter draws with matplotlib's object API (no pyplot, so nothing opens a window and a test
keeps no figures alive) and ends a figure's block with `keep(fig, NAME, **arrays)`:

- read as a chapter (a file, the tests, a notebook) `keep` returns the figure, which a
  notebook then displays, and writes nothing;
- `python -m docs.learn.make_figures` sets LEARN_FIGURES to a folder, and `keep` writes
  NAME.png and NAME.npz there: the picture, and the arrays it was drawn from.

Why the arrays: a PNG's bytes change with the matplotlib version, its fonts and its
anti-aliasing, so a test comparing PNGs would fail on a new matplotlib with nothing wrong.
The arrays are what the chapter computed; tests/test_learn.py recomputes them and compares
them with the committed NAME.npz (within float32 rounding), so a figure cannot go stale
without the test saying which one.
"""

import io
import os
import tempfile
from pathlib import Path

import numpy as np

FOLDER_VARIABLE = "LEARN_FIGURES"


def figure(width=8.0, height=3.0):
    """A matplotlib Figure with an Agg canvas, laid out without overlaps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def keep(fig, name, **arrays):
    """Return `fig`; when LEARN_FIGURES names a folder, also write NAME.png and NAME.npz there
    (each whole: a temporary file, then a rename)."""
    folder = os.environ.get(FOLDER_VARIABLE)
    if folder:
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=90)
        data = io.BytesIO()
        np.savez(data, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
        for suffix, content in ((".png", png.getvalue()), (".npz", data.getvalue())):
            _write_whole(Path(folder) / f"{name}{suffix}", content)
    return fig


def _write_whole(path, content):
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
