"""Landmarks in image pixels: the crop's affine map there and back, levelling by the eyes,
and a face's points found where a drawn face's features are."""

import numpy as np
import pytest

from emotion.face import geometry, landmarks


def dot_image(points, shape=(120, 160)):
    image = np.zeros(shape, np.uint8)
    for x, y in points:  # continuous coordinates: the pixel under (x, y) is (int(x), int(y))
        image[int(y), int(x)] = 255
    return image


@pytest.mark.parametrize("roll", [0.0, 12.0, -25.0])
def test_a_pixel_lands_where_the_crop_map_says(roll):
    point = np.array([[70.5, 52.5]])
    crop = landmarks.face_crop(dot_image(point), (50, 30, 50, 50), roll=roll)
    expected = point @ crop.to_crop[:, :2].T + crop.to_crop[:, 2]
    y, x = np.unravel_index(np.argmax(crop.image), crop.image.shape)
    assert np.abs(np.array([x + 0.5, y + 0.5]) - expected[0]).max() <= 1.0
    back = crop.to_image(expected * 48 / crop.image.shape[1], 48)
    np.testing.assert_allclose(back, point, atol=1e-3)


def test_levelling_turns_a_rolled_eye_line_flat():
    centre, half = np.array([80.0, 60.0]), 15.0
    angle = np.deg2rad(20)  # the image-right eye lower: a clockwise roll of 20 degrees
    eyes = np.array([centre - half * np.array([np.cos(angle), np.sin(angle)]),
                     centre + half * np.array([np.cos(angle), np.sin(angle)])])
    crop = landmarks.face_crop(np.zeros((120, 160), np.uint8), (55, 35, 50, 50), roll=20.0)
    in_crop = eyes @ crop.to_crop[:, :2].T + crop.to_crop[:, 2]
    assert abs(in_crop[0, 1] - in_crop[1, 1]) < 1e-6  # level in the crop


def test_locate_returns_image_points_and_the_roll_of_a_rolled_face():
    """A stand-in network that 'sees' a face whose eyes are level in the crop it is given
    only when the crop was levelled: the roll that comes back is the image's."""
    template = np.zeros((68, 2), np.float32) + 24
    template[36:42] = [16, 20]
    template[42:48] = [32, 20]
    calls = []

    def run_geometry(crops):
        calls.append(len(crops))
        n = len(crops)
        # first call: the eyes look rolled by 10 degrees; second call: level
        roll = 10.0 if len(calls) == 1 else 0.0
        t = np.radians(roll)
        r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pts = (template - 24) @ r.T + 24
        out = geometry.encode(np.repeat(pts[None], n, 0), np.tile([[5.0, -3.0, roll]], (n, 1)))
        return np.zeros((n, 7), np.float32), out, np.ones(n, np.float32)

    faces, crops, logits = landmarks.locate(run_geometry, np.zeros((100, 100), np.uint8),
                                            [(20, 20, 40, 40)])
    assert calls == [1, 1]  # a second, levelled pass
    assert crops[0].angle == pytest.approx(10.0, abs=1e-3)
    face = faces[0]
    assert (face.yaw, face.pitch) == (pytest.approx(5.0), pytest.approx(-3.0))
    assert face.roll == pytest.approx(10.0, abs=1e-3)
    assert landmarks.eye_line_roll(face.points) == pytest.approx(10.0, abs=1e-3)
    assert face.points.shape == (68, 2) and logits.shape == (1, 7)
    boxes = face.part_boxes()
    assert boxes["right_eye"][0] < boxes["left_eye"][0]  # the subject's right on the image left
