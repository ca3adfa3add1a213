"""`emotion explain`: the figure has every panel a learner needs, for a face and for an image
without one, and a user's mistakes end in a clear message, not a traceback.

Uses throwaway (untrained, seeded) weights: the figure's structure does not depend on what
the network has learned.
"""

import cv2
import numpy as np
import pytest

import nnlite
from nnlite import layers as L

from emotion import cli

from emotion.cnn import models
from emotion.cnn.explain import conv_blocks, explain_image
from emotion.labels import EMOTIONS
from emotion.cnn.preprocess import PreprocessConfig
from tests.conftest import MEDIA, REPO

SINGLE_FACE = MEDIA / "single_face.jpg"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    nnlite.seed(0)
    path = tmp_path_factory.mktemp("weights") / "compact.npz"
    nnlite.save(models.build("compact"), path,
                meta={"model": "compact", "preprocess": PreprocessConfig().to_dict()})
    return path


def expected_titles(first):
    return [first, "1. gray", "2. gamma 1.2", "3. Gaussian sigma 0.5", "4. normalized (per_image)"]


@pytest.mark.skipif(not SINGLE_FACE.is_file(), reason=f"shared media not found: {SINGLE_FACE}")
def test_explain_a_photo_with_a_face(weights, tmp_path):
    out = tmp_path / "explain.png"
    ex, titles = explain_image(SINGLE_FACE, out, weights=weights)

    assert out.read_bytes()[:8] == PNG_MAGIC
    assert ex.box is not None and ex.faces_found == 1
    assert titles[:5] == expected_titles("detected face")
    convs = [t for t in titles if t.startswith("conv ") and "maps" in t]
    assert [t.split(":")[0] for t in convs] == [f"conv {i} ReLU" for i in range(1, 8)]
    assert convs[0] == "conv 1 ReLU: 8 of 32 maps, 48x48"
    assert convs[-1] == "conv 7 ReLU: 8 of 256 maps, 6x6"
    predicted = ex.probabilities.argmax()
    assert titles[-4:] == [
        "conv 1 filters: 16 of 32 3x3 (red +, blue -)",
        f"saliency |d score({EMOTIONS[predicted]}) / d input|",
        f"Grad-CAM for {EMOTIONS[predicted]} (last conv, 6x6)",
        "probabilities (softmax of the logits)",
    ]
    assert ex.saliency.shape == (48, 48) and ex.saliency.max() > 0
    assert ex.grad_cam.shape == (6, 6) and (ex.grad_cam >= 0).all()
    assert ex.probabilities.shape == (7,) and abs(ex.probabilities.sum() - 1) < 1e-5


def test_explain_without_a_face_uses_the_centre_and_says_so(weights, tmp_path, capsys):
    image = tmp_path / "gradient.png"
    cv2.imwrite(str(image), np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (80, 1)))
    out = tmp_path / "explain.png"

    code = cli.main(["explain", str(image), "--out", str(out), "--weights", str(weights),
                     "--emotion", "sad"])

    assert code == 0
    assert "no face found" in capsys.readouterr().out
    assert out.read_bytes()[:8] == PNG_MAGIC
    ex, titles = explain_image(image, tmp_path / "again.png", weights=weights, emotion="sad")
    assert ex.box is None and titles[:5] == expected_titles("no face found: image centre")
    assert "saliency |d score(sad) / d input|" in titles


@pytest.mark.parametrize("content, message", [
    (None, "image not found"),
    (b"not an image at all", "could not read image"),
])
def test_unreadable_images_are_user_errors(weights, tmp_path, capsys, content, message):
    image = tmp_path / "face.jpg"
    if content is not None:
        image.write_bytes(content)
    code = cli.main(["explain", str(image), "--out", str(tmp_path / "x.png"),
                     "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_an_output_name_without_extension_gets_png_and_is_reported(weights, tmp_path, capsys):
    image = tmp_path / "gray.png"
    cv2.imwrite(str(image), np.full((60, 60), 128, np.uint8))
    code = cli.main(["explain", str(image), "--out", str(tmp_path / "figure"),
                     "--weights", str(weights)])
    assert code == 0 and f"wrote {tmp_path / 'figure.png'} " in capsys.readouterr().out
    assert (tmp_path / "figure.png").read_bytes()[:8] == PNG_MAGIC


def test_a_missing_output_folder_fails_before_the_work(tmp_path, capsys, monkeypatch):
    from emotion.cnn import classifier as predictor

    monkeypatch.setattr(predictor.EmotionClassifier, "load", None)  # must not be reached
    image = tmp_path / "gray.png"
    cv2.imwrite(str(image), np.full((60, 60), 128, np.uint8))
    code = cli.main(["explain", str(image), "--out", str(tmp_path / "nope" / "x.png")])
    assert code == 2 and "folder" in capsys.readouterr().err


def test_missing_weights_are_a_user_error(tmp_path, capsys):
    image = tmp_path / "gray.png"
    cv2.imwrite(str(image), np.full((60, 60), 128, np.uint8))
    code = cli.main(["explain", str(image), "--weights", str(tmp_path / "nope.npz")])
    assert code == 2 and "weight file not found" in capsys.readouterr().err


def test_conv_blocks_show_the_relu_after_each_conv():
    net = L.Sequential(L.Conv2d(1, 2, 3), L.ReLU(), L.LocalResponseNorm(3), L.MaxPool2d(2),
                       L.Conv2d(2, 2, 3), L.MaxPool2d(2), L.Conv2d(2, 2, 1), L.BatchNorm2d(2),
                       L.ReLU(), L.Flatten(), L.Linear(2, 7))
    assert conv_blocks(net) == [(1, 1), (2, 4), (3, 8)]  # conv 2 has no ReLU: its own output


def test_the_figure_shows_what_each_step_changed_and_scales_the_maps(weights, tmp_path):
    # gray, gamma and blur looked identical side by side, and feature maps had no colour scale
    from emotion.cnn.explain import build_figure

    face = cv2.imread(str(REPO / "docs" / "figures" / "synthetic_face.png"), cv2.IMREAD_GRAYSCALE)
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face)
    ex, titles = explain_image(image, tmp_path / "explain.png", weights=weights)
    assert titles[5:8] == ["2 minus 1: gamma's change", "3 minus 2: Gaussian's change",
                           "4: the input, in std units"]
    fig, _ = build_figure(ex)
    changes = [ax for ax in fig.axes if "change" in ax.get_title()]
    assert len(changes) == 2
    for ax in changes:  # a visible difference, drawn on a symmetric scale
        image_shown = ax.get_images()[0]
        low, high = image_shown.get_clim()
        assert high > 1 and low == -high and np.abs(image_shown.get_array()).max() > 1
    with_scale = [ax._colorbar.mappable.axes.get_title() for ax in fig.axes
                  if hasattr(ax, "_colorbar")]  # the panels that have a colour bar
    conv_panels = [t for t in titles if t.startswith("conv ") and "maps" in t]
    assert with_scale == titles[5:8] + conv_panels
