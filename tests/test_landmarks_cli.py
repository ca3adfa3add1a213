"""Landmarks and pose through the command line, on the shared photos: a mirrored photo
flips yaw and roll and keeps pitch, a photo rotated by a known angle moves the roll by that
angle, and the points land on the face the right way round (issue 31's targets, 3 degrees).

Each photo is written to a temporary file and read by `emotion predict --json`, as a user
would run it; the faces are matched by where their boxes fall.
"""

import json

import cv2
import numpy as np
import pytest

from emotion import cli
from emotion.face import ibug68
from tests.conftest import MEDIA

PHOTOS = [MEDIA / "single_face.jpg", MEDIA / "two_faces.jpg"]
pytestmark = pytest.mark.skipif(not all(p.is_file() for p in PHOTOS),
                                reason=f"shared test photos not found in {MEDIA}")
DEGREES = 3.0  # the tolerance for the pose of a mirrored or rotated photo


def predict(capsys, path, *extra):
    assert cli.main(["predict", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["faces"]


def centre(face):
    x, y, w, h = face["box"]
    return np.array([x + w / 2, y + h / 2])


def nearest(faces, point):
    return min(faces, key=lambda f: np.linalg.norm(centre(f) - point))


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.stem)
def test_the_points_sit_on_the_face_the_right_way_round(capsys, photo):
    for face in predict(capsys, photo):
        points = np.array(face["landmarks"])
        assert points.shape == (68, 2)
        x, y, w, h = face["box"]
        inside = ((points[:, 0] > x - 0.2 * w) & (points[:, 0] < x + 1.2 * w)
                  & (points[:, 1] > y - 0.2 * h) & (points[:, 1] < y + 1.3 * h))
        assert inside.all()
        right_eye, left_eye = ibug68.eye_centres(points)
        assert right_eye[0] < left_eye[0]  # the subject's right eye on the image's left
        nose_tip, mouth = points[30], points[ibug68.MOUTH].mean(0)
        assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1]  # eyes, nose, mouth
        eyes = face["parts"]["eyes"]
        assert len(eyes) == 2 and eyes[0][0] < eyes[1][0]


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.stem)
def test_a_mirrored_photo_flips_yaw_and_roll_and_keeps_pitch(capsys, tmp_path, photo):
    image = cv2.imread(str(photo))
    mirrored = tmp_path / f"{photo.stem}_mirrored.png"
    cv2.imwrite(str(mirrored), cv2.flip(image, 1))
    width = image.shape[1]
    original, flipped = predict(capsys, photo), predict(capsys, mirrored)
    assert len(original) == len(flipped) >= 1
    for face in original:
        twin = nearest(flipped, centre(face) * [-1, 1] + [width, 0])
        a, b = face["pose"], twin["pose"]
        assert abs(a["yaw"] + b["yaw"]) <= DEGREES, (a, b)
        assert abs(a["roll"] + b["roll"]) <= DEGREES, (a, b)
        assert abs(a["pitch"] - b["pitch"]) <= DEGREES, (a, b)
        # The points too: mirrored back (and renamed), within 5% of the eye distance.
        back = ibug68.flip_points(np.array(twin["landmarks"]), width)
        points = np.array(face["landmarks"])
        error = np.linalg.norm(back - points, axis=1).mean() / ibug68.interocular(points)
        assert error < 0.05, error


@pytest.mark.parametrize("angle", [-20.0, -10.0, 10.0, 20.0])
def test_a_rotated_photo_moves_the_roll_by_its_angle(capsys, tmp_path, angle):
    photo = MEDIA / "single_face.jpg"
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    # cv2's positive angle turns the picture counter-clockwise on screen: the head's roll
    # (positive clockwise, emotion.face.pose) goes down by it.
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rotated = tmp_path / "rotated.png"
    cv2.imwrite(str(rotated), cv2.warpAffine(image, matrix, (w, h),
                                             borderMode=cv2.BORDER_REPLICATE))
    (face,) = predict(capsys, photo)
    found = predict(capsys, rotated, "--rotations")
    twin = nearest(found, matrix[:, :2] @ centre(face) + matrix[:, 2])
    change = twin["pose"]["roll"] - face["pose"]["roll"]
    assert abs(change - (-angle)) <= DEGREES, (face["pose"], twin["pose"])
