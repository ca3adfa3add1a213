"""The README's nnlite example must run and learn (so the front page cannot rot)."""

import re

import numpy as np

from tests.conftest import REPO


def test_readme_example_trains():
    text = (REPO / "README.md").read_text()
    code = re.search(r"## nnlite in ten lines\n\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    namespace = {}
    np.random.seed(0)  # the example draws its data from NumPy's global generator
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["loss"].item() < 0.4
