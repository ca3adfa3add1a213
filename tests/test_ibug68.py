"""The 68-point iBUG definition (emotion.face.ibug68): the mirror permutation and helpers."""

import numpy as np
import pytest

from emotion.face import ibug68


def test_flip_is_an_involution_and_a_permutation():
    assert sorted(ibug68.FLIP.tolist()) == list(range(68))
    assert (ibug68.FLIP[ibug68.FLIP] == np.arange(68)).all()


def test_flipping_twice_is_the_identity():
    points = np.random.default_rng(0).uniform(0, 48, (5, 68, 2)).astype(np.float32)
    once = ibug68.flip_points(points, 48)
    assert not np.allclose(once, points)
    np.testing.assert_allclose(ibug68.flip_points(once, 48), points, atol=1e-5)
    assert once.dtype == np.float32 and points[0, 0, 0] == np.float32(points[0, 0, 0])  # input kept


@pytest.mark.parametrize("right, left", [
    (ibug68.RIGHT_EYE, ibug68.LEFT_EYE), (ibug68.RIGHT_BROW, ibug68.LEFT_BROW),
    (range(0, 8), range(9, 17)),
])
def test_left_and_right_groups_swap(right, left):
    assert sorted(ibug68.FLIP[list(right)].tolist()) == list(left)
    assert sorted(ibug68.FLIP[list(left)].tolist()) == list(right)


def test_the_midline_stays_and_corners_map_to_corners():
    for i in [8, *ibug68.NOSE_BRIDGE, 33, 51, 57, 62, 66]:
        assert ibug68.FLIP[i] == i
    assert ibug68.FLIP[36] == 45 and ibug68.FLIP[39] == 42  # outer to outer, inner to inner
    assert ibug68.FLIP[48] == 54 and ibug68.FLIP[60] == 64  # mouth corners
    assert sorted(ibug68.FLIP[list(ibug68.MOUTH)].tolist()) == list(ibug68.MOUTH)


def test_a_mirrored_face_has_its_right_eye_on_the_image_left_again():
    points = np.zeros((68, 2))
    points[ibug68.RIGHT_EYE] = (15.0, 20.0)   # the subject's right eye, on the image's left
    points[ibug68.LEFT_EYE] = (33.0, 22.0)
    mirrored = ibug68.flip_points(points, 48)
    right, left = ibug68.eye_centres(mirrored)
    np.testing.assert_allclose(right, (48 - 33.0, 22.0))
    np.testing.assert_allclose(left, (48 - 15.0, 20.0))


def test_eye_centres_interocular_and_part_boxes():
    points = np.zeros((68, 2))
    points[ibug68.RIGHT_EYE] = [(10, 20), (12, 18), (14, 18), (16, 20), (14, 22), (12, 22)]
    points[ibug68.LEFT_EYE] = [(30, 20), (32, 18), (34, 18), (36, 20), (34, 22), (32, 22)]
    points[ibug68.MOUTH] = np.linspace((18, 36), (28, 40), 20)
    right, left = ibug68.eye_centres(points)
    np.testing.assert_allclose(right, (13, 20))
    np.testing.assert_allclose(left, (33, 20))
    assert ibug68.interocular(points) == pytest.approx(26.0)  # corner 36 (10) to 45 (36)
    assert ibug68.interocular(np.stack([points, points])).shape == (2,)
    boxes = ibug68.part_boxes(points)
    assert set(boxes) == {"right_eye", "left_eye", "right_brow", "left_brow", "mouth"}
    assert boxes["right_eye"] == (10.0, 18.0, 6.0, 4.0)
    assert boxes["mouth"] == pytest.approx((18.0, 36.0, 10.0, 4.0))
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        ibug68.part_boxes(points[:10])
