"""The labels a model learned (FER2013's, or FER+'s majority or votes), recorded at training
time in the weight file's meta "labels" and reported by every front end that reports model
metadata: the classifier, the ONNX export, the explain figure, and serve's health and Inside
answers (evaluate's report: tests/test_train_evaluate.py). Weight files without the key, such
as the shipped ones, learned FER2013's labels.

Uses throwaway (untrained, seeded) weights: what is checked is the metadata, not the network.
"""

import json

import pytest

import nnlite
from emotion.cnn import models
from emotion.cnn.classifier import EmotionClassifier
from emotion.cnn.preprocess import PreprocessConfig
from tests.conftest import MEDIA

SINGLE_FACE = MEDIA / "single_face.jpg"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", params=[None, "ferplus-majority", "ferplus-votes"])
def weights(request, tmp_path_factory):
    """(a compact weight file, the labels its meta records: None for none)."""
    nnlite.seed(0)
    path = tmp_path_factory.mktemp("weights") / "compact.npz"
    meta = {"model": "compact", "preprocess": PreprocessConfig().to_dict()}
    if request.param:
        meta["labels"] = request.param
    nnlite.save(models.build("compact"), path, meta=meta)
    return path, request.param or "fer2013"


def test_the_classifier_reads_the_labels_and_the_shipped_names_say_theirs(weights):
    path, labels = weights
    assert EmotionClassifier.load(str(path), "numpy").labels == labels
    # The app's defaults learned FER+'s labels; the FER2013-trained weights say so by name
    # (issue 33), and those written before the labels were recorded read as FER2013's.
    for name in ("default", "compact", "mobile_face"):
        assert EmotionClassifier.load(name, "numpy").labels.startswith("ferplus"), name
    for name in ("default_fer2013", "compact_fer2013", "mobile_fer2013"):
        assert EmotionClassifier.load(name, "numpy").labels == "fer2013", name


def test_the_onnx_export_says_which_labels(weights, tmp_path):
    onnx = pytest.importorskip("onnx", reason="the export needs the [onnx] extra")
    from emotion.commands.export import export_emotion_model

    path, labels = weights
    out = export_emotion_model(str(path), tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["labels"] == labels and json.loads(meta["classes"])[0] == "angry"


@pytest.mark.skipif(not SINGLE_FACE.is_file(), reason=f"shared media not found: {SINGLE_FACE}")
def test_the_explain_figure_and_serve_say_which_labels(weights, tmp_path):
    pytest.importorskip("httpx", reason="the test client needs httpx (pip install -e '.[dev]')")
    from starlette.testclient import TestClient

    from emotion.cnn.explain import build_figure, explain_image
    from emotion.serve.app import create_app

    path, labels = weights
    ex, _ = explain_image(SINGLE_FACE, tmp_path / "explain.png", weights=str(path),
                          backend="numpy")
    assert ex.model_labels == labels
    fig, _ = build_figure(ex)
    assert f"model compact ({labels} labels)" in fig._suptitle.get_text()

    classifier = EmotionClassifier.load(str(path), "numpy")
    with TestClient(create_app(classifier=classifier), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/health").json()["labels"] == labels
        inside = client.post("/api/explain", content=SINGLE_FACE.read_bytes()).json()
    assert inside["model"] == "compact" and inside["labels"] == labels
