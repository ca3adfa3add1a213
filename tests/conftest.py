"""Shared test fixtures: where the shared data lives, and a clean nnlite state per test."""

from pathlib import Path

import pytest

import nnlite

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FER2013_CSV = SHARED_DATA / "fer2013" / "fer2013.csv.gz"
MEDIA = SHARED_DATA / "media"


@pytest.fixture(autouse=True)
def _restore_backend():
    """Each test starts on the backend the session started with, seeded."""
    previous = nnlite.current()
    nnlite.seed(0)
    yield
    nnlite.use(previous)
