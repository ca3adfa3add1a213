"""Face detection on the shared photos, cascade errors, face parts, alignment and crops."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.face.detector import (PHOTO_CONFIG, FaceDetector, PartsDetector, align_face, clip_box,
                                   crop_face, drop_duplicates, expand_box, load_cascade, roll_angle)
from emotion.errors import UserError
from emotion.io.images import to_gray8

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(),
                                 reason=f"shared test media not found at {MEDIA}")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(PHOTO_CONFIG)


@needs_media
@pytest.mark.parametrize("name, faces", [("group_selfie.jpg", 6), ("two_faces.jpg", 2),
                                         ("single_face.jpg", 1)])
def test_face_count_on_shared_photos(detector, name, faces):
    image = cv2.imread(str(MEDIA / name))
    boxes = detector.detect(to_gray8(image))
    assert len(boxes) == faces, boxes
    H, W = image.shape[:2]
    for x, y, w, h in boxes:  # mapped back to full resolution, inside the frame
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
        assert w >= 0.04 * min(H, W)


@needs_media
def test_eyes_level_the_face_on_a_real_photo():
    gray = to_gray8(cv2.imread(str(MEDIA / "single_face.jpg")))
    box = FaceDetector().detect(gray)[0]
    eyes = PartsDetector().find_eyes(gray, box)
    assert len(eyes) == 2
    for ex, ey, ew, eh in eyes:  # both in the upper half of the face
        assert ey + eh / 2 < box[1] + box[3] / 2
    assert abs(roll_angle(eyes)) < 10  # an upright portrait


def test_missing_cascade_is_a_user_error_naming_the_file(tmp_path):
    with pytest.raises(UserError, match="no_such_cascade.xml"):
        load_cascade("no_such_cascade.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(UserError, match="broken.xml"):
        load_cascade(str(broken))


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (30, 30), (200, 300)])
def test_tiny_or_blank_images_give_no_faces(detector, shape):
    assert detector.detect(np.full(shape, 128, np.uint8)) == []


def test_duplicates_inside_a_larger_box_are_dropped():
    face, chin, other = (100, 100, 100, 100), (120, 150, 80, 80), (300, 100, 90, 90)
    assert drop_duplicates([chin, face, other], max_overlap=0.4) == [face, other]


def test_roll_angle_sign_and_order():
    left, right = (10, 10, 10, 10), (50, 30, 10, 10)  # right eye 20 px lower, 40 px across
    assert roll_angle([left, right]) == pytest.approx(np.degrees(np.arctan2(20, 40)))
    assert roll_angle([right, left]) == roll_angle([left, right])
    assert roll_angle([left]) is None


def test_crop_margin_is_clipped_to_the_frame():
    gray = np.zeros((100, 200), np.uint8)
    assert expand_box((0, 0, 50, 50), 0.2, gray.shape) == (0, 0, 60, 60)
    assert expand_box((150, 60, 50, 40), 0.1, gray.shape) == (145, 56, 55, 44)
    assert crop_face(gray, (150, 60, 50, 40), 0.1).shape == (44, 55)
    assert clip_box((-10, -10, 5, 5), gray.shape)[2:] == (0, 0)


def test_align_face_levels_a_tilted_eye_line():
    # Two bright "eyes" on a line tilted by 20 degrees; after alignment they sit level.
    gray = np.zeros((200, 200), np.uint8)
    centre, half, angle = np.array([100.0, 90.0]), 30.0, np.radians(20)
    offset = half * np.array([np.cos(angle), np.sin(angle)])
    eye_centres = [centre - offset, centre + offset]
    for cx, cy in eye_centres:
        cv2.circle(gray, (int(round(cx)), int(round(cy))), 5, 255, -1)
    eyes = [(int(round(cx)) - 8, int(round(cy)) - 8, 16, 16) for cx, cy in eye_centres]
    assert roll_angle(eyes) == pytest.approx(20, abs=1.5)

    box = (40, 40, 120, 120)
    aligned = align_face(gray, box, eyes, margin=0.0)
    assert aligned.shape == (120, 120)
    spots, _ = cv2.findContours((aligned > 128).astype(np.uint8), cv2.RETR_EXTERNAL,
                                cv2.CHAIN_APPROX_SIMPLE)
    assert len(spots) == 2
    ys = [cv2.boundingRect(s)[1] + cv2.boundingRect(s)[3] / 2 for s in spots]
    assert abs(ys[0] - ys[1]) <= 2  # level within 2 px (was 20 px apart)

    # Without two eyes it is the plain crop.
    np.testing.assert_array_equal(align_face(gray, box, eyes[:1], 0.1), crop_face(gray, box, 0.1))
