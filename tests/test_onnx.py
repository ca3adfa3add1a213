"""ONNX export: onnxruntime must compute what nnlite computes, for every layer kind the
exporter knows and for every shipped weight file; what it cannot export is named."""

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

import nnlite
from nnlite import layers as L
from nnlite.onnx import INSTALL_HINT, ExportError, export
from tests.conftest import REPO

HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason=f"needs the onnx package ({INSTALL_HINT})")
needs_ort = pytest.mark.skipif(not (HAVE_ONNX and HAVE_ORT),
                               reason="needs onnx and onnxruntime (pip install -e '.[dev]')")
ATOL = 1e-4  # onnxruntime vs nnlite, on probabilities and on outputs scaled to at most 1


def run_onnx(path, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the test machine's cores are shared
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def nnlite_output(model, x):
    with nnlite.no_grad():
        return nnlite.to_numpy(model.eval()(nnlite.Tensor(x)))


def randomized(model):
    """Random biases, batch-norm scales and statistics: no layer may be the identity."""
    rng = np.random.default_rng(1)
    for m in model.modules():
        if isinstance(m, (L.Conv2d, L.Linear)) and m.b is not None:
            m.b.data = rng.normal(0, 0.5, m.b.shape).astype(np.float32)
        if isinstance(m, L.BatchNorm):
            c = m.gamma.shape[0]
            m.gamma.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.beta.data = rng.normal(0, 0.5, c).astype(np.float32)
            m.register_buffer("running_mean", rng.normal(0, 0.5, c).astype(np.float32))
            m.register_buffer("running_var", rng.uniform(0.5, 2.0, c).astype(np.float32))
    return model


def conv_bn(c_in, c_out, stride=1):
    return L.Sequential(L.Conv2d(c_in, c_out, 1, stride=stride, bias=False), L.BatchNorm2d(c_out))


# One small net per layer kind: (input shape without the batch, the net).
NETS = {
    "conv": ((3, 9, 9), lambda: L.Sequential(L.Conv2d(3, 4, 3, stride=2, pad=1))),
    "conv_same_odd_padding": ((2, 9, 8), lambda: L.Sequential(L.Conv2d(2, 3, 4, stride=2,
                                                                        pad="same"))),
    "conv_4_tuple_padding": ((2, 7, 7), lambda: L.Sequential(L.Conv2d(2, 3, 3, pad=(0, 2, 1, 0)))),
    "conv_grouped": ((4, 8, 8), lambda: L.Sequential(L.Conv2d(4, 8, 3, pad=1, groups=2))),
    "conv_depthwise_no_bias": ((4, 8, 8), lambda: L.Sequential(L.Conv2d(4, 4, 3, pad=1, groups=4,
                                                                         bias=False))),
    "batch_norm_2d": ((3, 6, 6), lambda: L.Sequential(L.Conv2d(3, 4, 3), L.BatchNorm2d(4))),
    "batch_norm_relu_fused": ((3, 6, 6), lambda: L.Sequential(L.Conv2d(3, 4, 3),
                                                               L.BatchNorm2d(4), L.ReLU())),
    "batch_norm_1d": ((2, 4, 4), lambda: L.Sequential(L.Flatten(), L.Linear(32, 6),
                                                       L.BatchNorm1d(6))),
    "relu": ((3, 5, 5), lambda: L.Sequential(L.Conv2d(3, 4, 3, pad=1), L.ReLU())),
    "max_pool": ((2, 8, 8), lambda: L.Sequential(L.MaxPool2d(2))),
    "max_pool_same": ((2, 9, 9), lambda: L.Sequential(L.MaxPool2d(3, 2, pad="same"))),
    "avg_pool_padded": ((2, 8, 8), lambda: L.Sequential(L.AvgPool2d(3, 2, pad=1))),
    "global_avg_pool": ((3, 5, 7), lambda: L.Sequential(L.GlobalAvgPool2d())),
    "lrn_odd_size": ((7, 4, 4), lambda: L.Sequential(L.LocalResponseNorm(5, alpha=0.5,
                                                                         beta=0.75, k=2.0))),
    "lrn_tflearn_like": ((12, 4, 4), lambda: L.Sequential(L.LocalResponseNorm(11, 1.1e-3))),
    "lrn_even_size": ((7, 4, 4), lambda: L.Sequential(L.LocalResponseNorm(4, alpha=0.5,
                                                                          beta=0.6, k=1.5))),
    "dropout": ((2, 4, 4), lambda: L.Sequential(L.Dropout(0.5), L.Conv2d(2, 2, 1))),
    "flatten_linear": ((2, 3, 3), lambda: L.Sequential(L.Flatten(), L.Linear(18, 5))),
    "linear_no_bias": ((6,), lambda: L.Sequential(L.Linear(6, 4, bias=False))),
    "residual_identity": ((4, 6, 6), lambda: L.Sequential(
        L.Residual(L.Sequential(L.Conv2d(4, 4, 3, pad=1), L.BatchNorm2d(4), L.ReLU())))),
    "residual_shortcut": ((4, 6, 6), lambda: L.Sequential(
        L.Residual(L.Sequential(L.Conv2d(4, 8, 3, stride=2, pad=1), L.BatchNorm2d(8)),
                   conv_bn(4, 8, stride=2)), L.ReLU())),
    "nested_sequential": ((2, 6, 6), lambda: L.Sequential(
        L.Sequential(L.Conv2d(2, 3, 3)), L.Sequential(L.Sequential(L.ReLU()), L.Flatten()))),
}


@needs_ort
@pytest.mark.parametrize("kind", NETS)
def test_onnxruntime_computes_what_nnlite_computes_for_each_layer_kind(kind, tmp_path):
    import onnx

    shape, make = NETS[kind]
    model = randomized(make())
    x = np.random.default_rng(2).normal(0, 1, (3, *shape)).astype(np.float32)
    path = export(model, x[:1], tmp_path / "net.onnx")  # exported for a batch of 1, run on 3
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    expected, got = nnlite_output(model, x), run_onnx(path, x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=ATOL)


@needs_onnx
def test_the_file_holds_float32_weights_a_free_batch_and_the_metadata(tmp_path):
    import onnx

    model = randomized(NETS["residual_shortcut"][1]())
    path = export(model, np.zeros((2, 4, 6, 6), np.float32), tmp_path / "m.onnx",
                  metadata={"classes": ["a", "b"], "note": "text"}, softmax=True)
    m = onnx.load(str(path))
    assert {t.data_type for t in m.graph.initializer} == {onnx.TensorProto.FLOAT}
    names = {t.name for t in m.graph.initializer}
    assert set(model.state_dict()) == names  # the weights under their state-dict names
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert m.graph.output[0].name == "probabilities"
    assert {p.key: p.value for p in m.metadata_props} == {"classes": '["a", "b"]', "note": "text"}


class Sigmoid(L.Module):
    def forward(self, x):
        return 1 / (1 + (-x).exp())


class LeakyReLU(L.ReLU):  # a subclass with its own forward computes something else
    def forward(self, x):
        return nnlite.functional.relu(x) - 0.01 * nnlite.functional.relu(-x)


@needs_onnx
@pytest.mark.parametrize("model, named", [
    (L.Sequential(L.Conv2d(1, 2, 3), L.ReLU(), Sigmoid()), "layer 2 (Sigmoid)"),
    (L.Sequential(L.Conv2d(1, 2, 3), LeakyReLU()), "layer 1 (LeakyReLU): it has its own forward"),
    (L.Sequential(L.Conv2d(1, 2, 1), L.Residual(L.Sequential(Sigmoid()))),
     "layer 1.body.0 (Sigmoid)"),
])
def test_an_unsupported_layer_is_named_with_its_position(model, named, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"an older export")
    model.train()
    with pytest.raises(ExportError, match=re.escape(named)):
        export(model, np.zeros((1, 1, 5, 5), np.float32), target)
    assert target.read_bytes() == b"an older export"  # nothing half-written in its place
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left
    assert all(m.training for m in model.modules())  # the modes the caller had come back


@needs_onnx
def test_export_refuses_what_it_cannot_write_exactly(tmp_path):
    model = L.Sequential(L.Conv2d(1, 2, 3))
    with pytest.raises(ExportError, match="float32"):
        export(model, np.zeros((1, 1, 5, 5), np.float64), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="opset must be"):
        export(model, np.zeros((1, 1, 5, 5), np.float32), tmp_path / "m.onnx", opset=7)
    with pytest.raises(ExportError, match=r"0.W is float64.*astype"):
        export(model.astype(np.float64), np.zeros((1, 1, 5, 5), np.float32), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="takes an nnlite Module"):
        export([L.ReLU()], np.zeros((1, 2), np.float32), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="Flatten before it"):
        export(L.Sequential(L.Linear(5, 2)), np.zeros((1, 1, 5, 5), np.float32),
               tmp_path / "m.onnx")


def test_a_missing_onnx_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    from emotion.cli import main as cli_main

    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` meets when it is absent
    with pytest.raises(ExportError, match=re.escape(INSTALL_HINT)):
        export(L.Sequential(L.ReLU()), np.zeros((1, 2), np.float32), tmp_path / "m.onnx")
    assert cli_main(["export", "--weights", "mobile_fer2013", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and INSTALL_HINT in err and "Traceback" not in err


def test_importing_nnlite_and_the_exporter_does_not_import_onnx():
    code = ("import sys, nnlite, nnlite.onnx, emotion.commands.export, emotion.cli; "
            "assert 'onnx' not in sys.modules, 'onnx was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- the emotion model -------------------------------------------------------------------------
def face_batch(config):
    """The docs' synthetic face (and its mirror image), two noise images and a flat one,
    preprocessed with the model's own config: (5, 1, 48, 48) float32."""
    from emotion.io.images import read_image, to_gray8
    from emotion.cnn.preprocess import faces_to_batch

    face = to_gray8(read_image(REPO / "docs" / "figures" / "synthetic_face.png"))
    noise = np.random.default_rng(3).integers(0, 256, (2, 60, 50), dtype=np.uint8)
    return faces_to_batch([face, face[:, ::-1], *noise, np.full((30, 30), 90, np.uint8)], config)


@needs_ort
@pytest.mark.parametrize("weights", ["default", "compact", "mobile_fer2013"])
def test_every_shipped_model_gives_nnlites_probabilities(weights, tmp_path, capsys):
    import json

    from emotion.cli import main as cli_main
    from emotion.labels import EMOTIONS
    from emotion.cnn.classifier import EmotionClassifier

    out = tmp_path / f"{weights}.onnx"
    assert cli_main(["export", "--weights", weights, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    classifier = EmotionClassifier.load(weights, backend="numpy")
    x = face_batch(classifier.preprocess_config)
    expected, got = classifier.predict_batch(x), run_onnx(out, x)
    assert got.dtype == np.float32 and got.shape == (len(x), len(EMOTIONS))
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)  # probabilities, not logits

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == list(EMOTIONS)
    assert meta["model"] == classifier.model_name
    prep = json.loads(meta["preprocessing"])
    config = classifier.preprocess_config.to_dict()
    assert {k: prep[k] for k in config if k != "gaussian_ksize"} == {
        k: v for k, v in config.items() if k != "gaussian_ksize"}
    assert prep["input_size"] == [48, 48] and prep["gaussian_ksize"] % 2 == 1


@needs_onnx
def test_export_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    import shutil

    from emotion.cli import main as cli_main
    from emotion.cnn.classifier import shipped_weights_path

    weights = tmp_path / "mine.npz"
    shutil.copy(shipped_weights_path("mobile_fer2013"), weights)
    before = weights.read_bytes()
    for argv, says in (
        (["--weights", weights, "--out", weights], "is the weight file"),
        (["--weights", weights, "--out", tmp_path / "no" / "m.onnx"], "does not exist"),
        (["--weights", weights, "--out", tmp_path], "it is a folder"),
        (["--weights", tmp_path / "none.npz", "--out", tmp_path / "m.onnx"], "not found"),
        (["--weights", weights, "--out", tmp_path / "m.onnx", "--opset", "3"], "opset must be"),
    ):
        assert cli_main(["export", *map(str, argv)]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert weights.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.npz"]
    with pytest.raises(SystemExit) as exit_:  # --out is required: argparse's usage error
        cli_main(["export", "--weights", str(weights)])
    assert exit_.value.code == 2


def test_the_docs_run_the_exported_model_in_ten_lines():
    # test_docs.py runs the block; here only its length is held to the promise
    text = (REPO / "docs" / "app.md").read_text()
    block = re.search(r"In ten lines[^\n]*:\n\n```python\n(.*?)```", text, re.S)
    assert block, "the docs lost their onnxruntime snippet"
    assert len(block.group(1).strip().splitlines()) <= 10
