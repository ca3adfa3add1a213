"""Augmentation: shapes and dtype, seeded determinism, and each transform checked exactly on
small cases (a flip mirrors, a whole-pixel shift moves pixels, 90 degrees is rot90)."""

import time

import numpy as np
import pytest

from emotion.training.augment import Augmenter, affine, bilinear, flip_tta, random_erase, ten_crop

OFF = dict(shift=0, rotate_degrees=0, zoom=0, flip=False, erase_prob=0)  # every part disabled


def batch(n=16, c=1, h=48, w=48, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)


def no_transform(n):
    return np.zeros(n), np.ones(n), np.zeros((n, 2)), np.zeros(n, bool)


def test_shape_dtype_and_input_untouched():
    x = batch()
    before = x.copy()
    out = Augmenter()(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(x, before)
    assert Augmenter()(x.astype(np.float64), np.random.default_rng(0)).dtype == np.float32


def test_same_seed_same_batch_other_seed_other_batch():
    x = batch()
    augment = Augmenter()
    first = augment(x, np.random.default_rng(7))
    np.testing.assert_array_equal(first, augment(x, np.random.default_rng(7)))
    assert not np.allclose(first, augment(x, np.random.default_rng(8)))


def test_everything_off_is_the_identity():
    x = batch()
    np.testing.assert_array_equal(Augmenter(**OFF)(x, np.random.default_rng(0)), x)


def test_flip_mirrors_about_half_of_the_images():
    x = batch(64)
    out = Augmenter(**{**OFF, "flip": True})(x, np.random.default_rng(0))
    mirrored = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)]
    unchanged = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(m != u for m, u in zip(mirrored, unchanged))  # each image one or the other
    assert 16 < sum(mirrored) < 48


def test_whole_pixel_shift_moves_pixels_and_repeats_the_edge():
    x = batch(2)
    angle, scale, _, mirror = no_transform(2)
    out = affine(x, angle, scale, np.array([[0, 3], [-2, 0]]), mirror)
    np.testing.assert_array_equal(out[0, :, :, 3:], x[0, :, :, :-3])  # 3 px to the right
    np.testing.assert_array_equal(out[0, :, :, :3], np.repeat(x[0, :, :, :1], 3, axis=-1))
    np.testing.assert_array_equal(out[1, :, :-2], x[1, :, 2:])  # 2 px up
    np.testing.assert_array_equal(out[1, :, -2:], np.repeat(x[1, :, -1:], 2, axis=1))


def test_quarter_turn_is_rot90_and_every_channel_moves_alike():
    x = batch(2, c=3, h=9, w=9)
    _, scale, shift, mirror = no_transform(2)
    out = affine(x, np.full(2, np.pi / 2), scale, shift, mirror)
    np.testing.assert_allclose(out, np.rot90(x, k=-1, axes=(2, 3)), atol=1e-5)


def test_bilinear_takes_distance_weighted_means():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # value = 4 * row + column
    ys = np.array([[[0.5, 1.25, 3.0, 3.0]]], np.float32)
    xs = np.array([[[0.5, 2.0, 2.5, 9.0]]], np.float32)  # 9: beyond the edge, clamped
    out = bilinear(x, ys, xs)
    np.testing.assert_allclose(out[0, 0, 0], [2.5, 7.0, 14.5, 15.0], atol=1e-6)


def test_random_erase_blanks_one_rectangle_per_chosen_image():
    x = batch(32) + 10  # no pixel is 0 before erasing
    out = random_erase(x, np.random.default_rng(0), prob=1.0, area=(0.05, 0.2))
    for image in out[:, 0]:
        rows, cols = np.nonzero(image == 0)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert len(rows) == height * width  # one filled rectangle
        assert 0.05 * 48 * 48 * 0.7 <= len(rows) <= 0.2 * 48 * 48 * 1.3  # rounding of sides
    np.testing.assert_array_equal(random_erase(x, np.random.default_rng(0), 0.0, (0.05, 0.2)), x)
    assert (random_erase(x, np.random.default_rng(0), 1.0, (0.1, 0.1), value=-3) == -3).any()


def test_flip_tta_views():
    x = batch(5)
    views = flip_tta(x)
    assert views.shape == (2, 5, 1, 48, 48)
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], x[..., ::-1])


def test_ten_crop_views():
    x = batch(3)
    views = ten_crop(x)  # size 44: shifts of 2 pixels
    assert views.shape == (10, 3, 1, 48, 48) and views.dtype == np.float32
    np.testing.assert_array_equal(views[0], x)  # the centre view is the image
    # The top-left "crop" re-centred: the image moved 2 px down and right, edge repeated.
    np.testing.assert_array_equal(views[1][..., 2:, 2:], x[..., :-2, :-2])
    np.testing.assert_array_equal(views[1][..., :2, 2:], np.repeat(x[..., :1, :-2], 2, axis=2))
    np.testing.assert_array_equal(views[4][..., :-2, :-2], x[..., 2:, 2:])  # bottom-right
    for plain, mirrored in zip(views[:5], views[5:]):
        np.testing.assert_array_equal(mirrored, plain[..., ::-1])
    with pytest.raises(ValueError):
        ten_crop(x, size=50)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        Augmenter(zoom=1.5)
    with pytest.raises(ValueError):
        Augmenter(erase_prob=2)
    with pytest.raises(ValueError):
        Augmenter()(np.zeros((4, 48, 48), np.float32), np.random.default_rng(0))


def test_a_training_batch_is_fast():
    x = batch(128)
    augment, rng = Augmenter(), np.random.default_rng(0)
    augment(x, rng)
    start = time.perf_counter()
    for _ in range(5):
        augment(x, rng)
    # About 10-20 ms per batch of 128 here; the bound only catches a per-pixel Python loop.
    assert (time.perf_counter() - start) / 5 < 0.2
