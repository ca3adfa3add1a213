"""The public Python API: emotion.analyze and emotion.analyze_video give what the CLI gives
(`predict --json`'s face records, `video --csv`'s rows), and the README's lines run."""

import json
import re

import numpy as np
import pandas as pd
import pytest

import emotion
from emotion import cli
from emotion.errors import UserError
from emotion.io.images import read_image
from emotion.io.rows import COLUMNS, TEXT_COLUMNS
from emotion.video import pipeline
from tests.conftest import MEDIA, REPO
from tests.test_pipeline_cli import FakeClassifier

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(),
                                reason=f"shared test media not found at {MEDIA}")


@pytest.fixture
def fake_classifier(monkeypatch):
    # The CNN is not what is tested here (and the real one would compile Numba kernels): the
    # API and the CLI must turn the same detections into the same records.
    monkeypatch.setattr(pipeline, "load_classifier",
                        lambda weights=None, backend=None: FakeClassifier())


def test_analyze_gives_the_records_predict_json_prints(capsys, fake_classifier):
    path = MEDIA / "two_faces.jpg"
    assert cli.main(["predict", str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    faces = emotion.analyze(path)
    assert len(faces) == 2
    assert faces == printed["faces"]
    assert emotion.analyze(read_image(path)) == faces  # an array gives the same
    assert emotion.analyze(str(path)) == faces


def test_analyze_video_gives_the_rows_video_csv_writes(tmp_path, fake_classifier):
    path, csv = MEDIA / "woman_smiling_phone.mp4", tmp_path / "rows.csv"
    assert cli.main(["video", str(path), "--csv", str(csv), "--detect-every", "3"]) == 0
    written = pd.read_csv(csv)
    table = emotion.analyze_video(path, detect_every=3)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == COLUMNS and len(table) == len(written) > 0
    for column in COLUMNS:
        if column in TEXT_COLUMNS:
            assert table[column].fillna("").tolist() == written[column].fillna("").tolist()
        else:  # the CSV keeps what the rows hold, to their 4 decimals
            np.testing.assert_allclose(table[column].to_numpy(float),
                                       written[column].to_numpy(float), rtol=0, atol=1e-9,
                                       err_msg=column)


def test_analyze_video_stops_after_max_frames(fake_classifier):
    table = emotion.analyze_video(MEDIA / "woman_smiling_phone.mp4", max_frames=5)
    assert set(table["frame"]) <= set(range(5)) and len(table) > 0


def test_analyze_names_unknown_weights_as_the_cli_does():
    with pytest.raises(UserError, match="bogusname"):
        emotion.analyze(MEDIA / "single_face.jpg", weights="bogusname")


def test_readme_python_lines_run(monkeypatch, fake_classifier):
    text = (REPO / "README.md").read_text()
    code = re.search(r"## From Python\n.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) == 3
    code = (code.replace('"photo.jpg"', repr(str(MEDIA / "two_faces.jpg")))
            .replace('"clip.mp4"', repr(str(MEDIA / "woman_smiling_phone.mp4"))))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert [set(face) for face in namespace["faces"]] == [
        {"box", "emotion", "probabilities", "intensity", "pose", "parts", "landmarks"}] * 2
    assert list(namespace["rows"].columns) == COLUMNS and len(namespace["rows"]) > 0
