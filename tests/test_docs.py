"""The docs cannot rot: every ```python block in docs/*.md runs (in order, one namespace per
file, from the repository root), and every relative link points at a file that exists."""

import os
import re
import time

import pytest

from tests.conftest import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(doc, monkeypatch, capsys):
    blocks = PYTHON_BLOCK.findall(doc.read_text())
    monkeypatch.chdir(REPO)  # the snippets use paths relative to the repository root
    namespace = {"__name__": f"docs.{doc.stem}"}
    start = time.perf_counter()
    for i, code in enumerate(blocks, 1):
        line = doc.read_text()[: doc.read_text().index(code)].count("\n") + 1
        try:
            exec(compile(code, f"{doc.name}, block {i} (line {line})", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{doc.name}: python block {i} at line {line} failed: "
                                 f"{type(err).__name__}: {err}") from err
    assert time.perf_counter() - start < 10, "keep the doc snippets fast"


def test_there_is_something_to_run():
    assert any(PYTHON_BLOCK.search(doc.read_text()) for doc in DOCS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_exist(doc):
    missing = [target for target in LINK.findall(doc.read_text())
               if "://" not in target and not os.path.exists(doc.parent / target)]
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"
