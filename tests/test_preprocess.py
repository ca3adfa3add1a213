"""The shared preprocessing: each step does what it says on small known inputs, the output is
always float32 (N, 1, 48, 48), and the live path (face_to_input) is the training path."""

import json
import time

import cv2
import numpy as np
import pytest

from emotion.errors import UserError
from emotion.cnn.preprocess import (PreprocessConfig, face_to_input, faces_to_batch,
                                    fit_dataset_stats, gaussian_blur, gaussian_kernel, preprocess,
                                    preprocess_steps, to_gray)

RAW = PreprocessConfig(gamma=1.0, gaussian_sigma=0, normalize="none")  # only scales to 0..1


def faces(n=3, size=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(5, 48, 48), (5, 1, 48, 48), (48, 48)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("config", [PreprocessConfig(), PreprocessConfig(gamma=1.3, equalize=True),
                                    RAW], ids=["default", "gamma-equalize", "raw"])
def test_output_is_float32_n_1_h_w(shape, dtype, config):
    images = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    out = preprocess(images, config)
    n = shape[0] if len(shape) > 2 else 1
    assert out.shape == (n, 1, 48, 48) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_uint8_and_float_inputs_give_the_same_result():
    images = faces()
    config = PreprocessConfig(gamma=1.5, gaussian_sigma=0.7)
    np.testing.assert_allclose(preprocess(images, config),
                               preprocess(images.astype(np.float32), config), atol=1e-5)


def test_none_normalization_only_scales_to_unit_range():
    images = faces()
    np.testing.assert_allclose(preprocess(images, RAW)[:, 0], images / 255.0, atol=1e-7)


def test_gamma_follows_its_formula():
    images = np.array([[[0, 64, 128, 255]]], np.uint8)  # (1, 1, 4)
    for gamma in (0.5, 2.0):
        config = PreprocessConfig(gamma=gamma, gaussian_sigma=0, normalize="none")
        expected = (images / 255.0) ** (1 / gamma)  # = 255 * (x / 255) ** (1 / gamma), on 0..1
        np.testing.assert_allclose(preprocess(images, config)[:, 0], expected, rtol=1e-6)
    brighter = preprocess(images, PreprocessConfig(gamma=2.0, gaussian_sigma=0, normalize="none"))
    assert (brighter[0, 0, 0, 1:3] > images[0, 0, 1:3] / 255).all()  # gamma > 1 lifts shadows


def test_gaussian_spreads_an_impulse_into_the_kernel():
    impulse = np.zeros((1, 48, 48), np.float32)
    impulse[0, 24, 24] = 255
    config = PreprocessConfig(gaussian_sigma=0.8, gaussian_ksize=5, normalize="none")
    out = preprocess(impulse, config)[0, 0]
    k = gaussian_kernel(0.8, 5)
    np.testing.assert_allclose(out[22:27, 22:27], np.outer(k, k), atol=1e-6)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.count_nonzero(out) == 25


def test_gaussian_kernel_and_blur_match_opencv():
    for sigma, ksize in [(0.5, 0), (0.8, 5), (2.0, 9)]:
        k = gaussian_kernel(sigma, ksize)
        assert len(k) % 2 == 1 and k.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(k, cv2.getGaussianKernel(len(k), sigma)[:, 0], atol=1e-7)
        images = faces(4).astype(np.float32)
        expected = np.stack([cv2.GaussianBlur(i, (len(k), len(k)), sigma) for i in images])
        np.testing.assert_allclose(gaussian_blur(images, sigma, ksize), expected, atol=1e-3)
    assert len(gaussian_kernel(0.5)) == 5  # 3 sigma each side, rounded up


def test_equalization_is_opencvs_histogram_equalization():
    images = (faces(4) // 3 + 40).astype(np.uint8)  # low contrast: levels 40..125
    config = PreprocessConfig(gamma=1.0, gaussian_sigma=0, equalize=True, normalize="none")
    out = preprocess(images, config)[:, 0] * 255
    expected = np.stack([cv2.equalizeHist(i) for i in images])
    np.testing.assert_allclose(out, expected, atol=1e-3)
    assert out.min() == 0 and out.max() == 255


def test_per_image_normalization():
    images = faces(4).astype(np.float32) * np.array([0.2, 0.5, 1.0, 0.1])[:, None, None]
    linear = PreprocessConfig(gamma=1.0, gaussian_sigma=0)
    out = preprocess(images, linear)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)
    # Linear brightness and contrast changes do not change the result.
    np.testing.assert_allclose(out[0], preprocess(images[:1] * 3 + 20, linear)[0], atol=1e-4)
    assert preprocess(images, PreprocessConfig()).std(axis=(1, 2, 3)) == pytest.approx(1, abs=1e-4)
    flat = preprocess(np.full((1, 48, 48), 77, np.uint8))
    assert np.isfinite(flat).all() and np.abs(flat).max() == 0


def test_dataset_normalization_uses_fitted_statistics():
    images = faces(20)
    config = fit_dataset_stats(images, PreprocessConfig(gamma=1.2))
    assert config.normalize == "dataset" and config.gamma == 1.2
    out = preprocess(images, config)
    assert out.mean() == pytest.approx(0, abs=1e-4) and out.std() == pytest.approx(1, abs=1e-4)
    with pytest.raises(UserError, match="needs mean and std"):
        preprocess(images, PreprocessConfig(normalize="dataset"))


def test_config_round_trips_through_json_and_rejects_bad_settings():
    config = fit_dataset_stats(faces(), PreprocessConfig(gamma=1.3, equalize=True))
    assert PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(UserError, match=r"unknown preprocessing settings \['sharpen'\]"):
        PreprocessConfig.from_dict({**config.to_dict(), "sharpen": 1})
    for bad in [{"gamma": 0}, {"gamma": "1"}, {"gaussian_sigma": -1}, {"gaussian_ksize": 4},
                {"normalize": "zscore"}, {"std": 0.0}, {"equalize": "yes"}]:
        with pytest.raises(UserError):
            PreprocessConfig.from_dict(bad)
    with pytest.raises(UserError, match="must be a dict"):
        PreprocessConfig.from_dict([1, 2])


def test_face_to_input_is_the_training_path():
    config = PreprocessConfig(gamma=1.2, gaussian_sigma=0.6)
    crop = faces(1)[0]
    np.testing.assert_array_equal(face_to_input(crop, config), preprocess(crop[None], config)[0])
    assert face_to_input(crop).shape == (1, 48, 48) and face_to_input(crop).dtype == np.float32

    big = faces(1, size=96)[0]  # shrinking: area averaging
    np.testing.assert_array_equal(
        face_to_input(big, config),
        preprocess(cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA)[None], config)[0])
    small = faces(1, size=30)[0]  # enlarging: bilinear
    np.testing.assert_array_equal(
        face_to_input(small, config),
        preprocess(cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR)[None], config)[0])

    bgr = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(face_to_input(bgr, config), face_to_input(big, config))


def test_faces_to_batch_stacks_face_to_input():
    crops = [faces(1, size=s, seed=s)[0] for s in (48, 100, 20)]
    batch = faces_to_batch(crops)
    assert batch.shape == (3, 1, 48, 48) and batch.dtype == np.float32
    for crop, row in zip(crops, batch):
        np.testing.assert_allclose(row, face_to_input(crop), atol=1e-6)
    assert faces_to_batch([]).shape == (0, 1, 48, 48)


def test_one_face_takes_well_under_a_millisecond():
    crop = faces(1, size=120)[0]
    face_to_input(crop)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        face_to_input(crop)
        times.append(time.perf_counter() - start)
    # Typically 0.05-0.1 ms; the bound only catches gross regressions on a busy machine.
    assert np.median(times) < 2e-3


def test_preprocess_steps_for_the_explain_figure():
    config = PreprocessConfig(gamma=1.4, gaussian_sigma=0.5, equalize=True)
    steps = preprocess_steps(faces(1)[0], config)
    assert [name.split()[0] for name, _ in steps] == ["gray", "gamma", "Gaussian", "equalized",
                                                      "normalized"]
    assert all(image.shape == (48, 48) for _, image in steps)
    np.testing.assert_array_equal(steps[-1][1], preprocess(faces(1), config)[0, 0])
    assert [n.split()[0] for n, _ in preprocess_steps(faces(1)[0], RAW)] == ["gray", "gamma",
                                                                              "normalized"]


@pytest.mark.parametrize("image, expected", [
    (np.full((4, 5), 200, np.uint8), 200),
    (np.full((4, 5, 1), 200, np.uint8), 200),
    (np.full((4, 5, 3), 200, np.uint8), 200),
    (np.full((4, 5, 4), 200, np.uint8), 200),
    (np.full((4, 5), 65535, np.uint16), 255),
    (np.full((4, 5, 3), 32768, np.uint16), 128),
    (np.full((4, 5), 1.0, np.float32), 255),
    (np.full((4, 5, 3), 0.5, np.float64), 128),
], ids=["gray", "gray-1", "bgr", "bgra", "u16", "u16-bgr", "float", "float-bgr"])
def test_to_gray_accepts_every_usual_kind(image, expected):
    gray = to_gray(image)
    assert gray.shape == (4, 5) and gray.dtype == np.uint8
    assert (gray == expected).all()


def test_to_gray_uses_the_bgr_weights():
    blue, red = np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8)
    blue[..., 0], red[..., 2] = 255, 255
    assert to_gray(blue)[0, 0] == 29 and to_gray(red)[0, 0] == 76  # 0.114 B, 0.299 R


@pytest.mark.parametrize("image, problem", [
    (np.zeros((4, 5, 5), np.uint8), r"got an array of shape \(4, 5, 5\)"),
    (np.zeros(10, np.uint8), r"got an array of shape \(10,\)"),
    (np.zeros((0, 5), np.uint8), "empty image"),
    (np.zeros((4, 5), bool), "got dtype bool"),
    (np.zeros((4, 5), complex), "got dtype complex"),
])
def test_to_gray_refuses_other_arrays_clearly(image, problem):
    with pytest.raises(UserError, match=problem):
        to_gray(image)


def test_preprocess_refuses_other_shapes():
    with pytest.raises(UserError, match=r"\(N, H, W\) or \(N, 1, H, W\)"):
        preprocess(np.zeros((2, 3, 48, 48), np.float32))
