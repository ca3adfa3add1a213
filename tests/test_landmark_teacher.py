"""The FER2013 landmark teacher (emotion.training.landmark_teacher).

The script runs MediaPipe in a virtual environment of its own; the project's (and CI's) has no
MediaPipe, so the test that runs the mesh skips with a reason, and the rest checks the parts
that are plain arithmetic: the mapping table, the pose fit and its conventions, the 48 px
back-mapping, reading the CSV.
"""

import gzip
import math

import numpy as np
import pytest

from emotion.face import ibug68
from emotion.training import landmark_teacher as teacher
from tests.conftest import MEDIA, REPO


def test_the_mapping_table_is_68_distinct_mesh_indices():
    table = teacher.MP_TO_IBUG68
    assert len(table) == 68 and len(set(table)) == 68
    assert all(isinstance(i, int) and 0 <= i < 468 for i in table)


def test_the_canonical_face_is_mirror_symmetric_under_flip():
    # CANONICAL_68 is MediaPipe's canonical face at the table's indices, so this checks the
    # table against ibug68.FLIP: point i mirrored (x -> -x) must be point FLIP[i].
    mirrored = teacher.CANONICAL_68[ibug68.FLIP] * (-1, 1, 1)
    np.testing.assert_allclose(mirrored, teacher.CANONICAL_68, atol=1e-3)


def test_the_canonical_face_has_its_parts_where_a_frontal_face_has_them():
    face = teacher.CANONICAL_68
    right_eye, left_eye = ibug68.eye_centres(face[:, :2])
    assert right_eye[0] < 0 < left_eye[0]             # the subject's right on the image's left
    eyes_y, nose_y, mouth_y = right_eye[1], face[30, 1], face[ibug68.MOUTH, 1].mean()
    assert eyes_y < nose_y < mouth_y < face[8, 1]      # y grows downwards
    assert face[30, 2] == face[:, 2].min()             # the nose tip is nearest the camera


@pytest.mark.parametrize("yaw, pitch, roll", [
    (0, 0, 0), (20, 0, 0), (-35, 10, 5), (10, -25, -12), (5, 15, 30), (-50, -5, -20),
])
def test_the_pose_fit_recovers_a_known_rotation(yaw, pitch, roll):
    rng = np.random.default_rng(abs(yaw) + 100 * abs(pitch))
    rotation = teacher.rotation_from_angles(yaw, pitch, roll)
    points = 2.7 * teacher.CANONICAL_68 @ rotation.T + (24.0, 26.0, 3.0)
    noisy = points + rng.normal(0, 0.05, points.shape)     # a tenth of a pixel at 48 px
    assert teacher.pose_from_points(points) == pytest.approx((yaw, pitch, roll), abs=1e-6)
    assert teacher.pose_from_points(noisy) == pytest.approx((yaw, pitch, roll), abs=1.5)


def test_umeyama_recovers_scale_rotation_and_translation():
    rotation = teacher.rotation_from_angles(12, -7, 33)
    src = teacher.CANONICAL_68
    scale, r, t = teacher.umeyama(src, 0.4 * src @ rotation.T + (1.0, 2.0, 3.0))
    assert scale == pytest.approx(0.4)
    np.testing.assert_allclose(r, rotation, atol=1e-9)
    np.testing.assert_allclose(t, (1.0, 2.0, 3.0), atol=1e-9)


def _projected(yaw, pitch, roll):
    return teacher.CANONICAL_68 @ teacher.rotation_from_angles(yaw, pitch, roll).T


def test_the_angles_follow_pose_py_conventions_in_the_image():
    # emotion/face/pose.py: yaw > 0 turns the nose toward the image's right, pitch > 0 lifts the
    # chin, roll > 0 lowers the image-right eye. Checked on where the points go, not on R.
    front, turned, up = _projected(0, 0, 0), _projected(20, 0, 0), _projected(0, 20, 0)
    assert turned[30, 0] > front[30, 0]                       # nose tip moves right
    # Chin up: the nose tip, nearest the camera, rises more than the eyes do, toward them.
    assert up[30, 1] - up[36:48, 1].mean() < front[30, 1] - front[36:48, 1].mean()
    assert up[30, 1] < front[30, 1]
    rolled = _projected(0, 0, 15)
    assert rolled[45, 1] > rolled[36, 1]                      # image-right eye lower


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 17), (25, -10, 8), (-30, 20, -14)])
def test_roll_is_the_angle_of_the_eye_line_in_the_image(yaw, pitch, roll):
    # pose.py measures roll from the eye centres; the fit's roll must be that same angle.
    points = _projected(yaw, pitch, roll)
    right, left = ibug68.eye_centres(points[:, :2])
    eye_line = math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))
    assert teacher.pose_from_points(points)[2] == pytest.approx(eye_line, abs=1e-6)


def test_a_mirrored_face_negates_yaw_and_roll_and_keeps_pitch():
    points = _projected(22, -9, 13) * 3 + (24, 24, 0)
    mirrored = points[ibug68.FLIP] * (-1, 1, 1) + (48, 0, 0)
    yaw, pitch, roll = teacher.pose_from_points(mirrored)
    assert (yaw, pitch, roll) == pytest.approx((-22, -9, -13), abs=1e-6)


def test_a_pixel_of_the_48px_face_maps_back_to_itself():
    # prepare() upscales 4x and pads; to_face_pixels() must undo both. A bright pixel at
    # row 10, column 30 has its centre at (30.5, 10.5) in continuous pixel coordinates.
    face = np.zeros((48, 48), np.uint8)
    face[10, 30] = 255
    image, pad, scale = teacher.prepare(face)
    assert image.shape == (288, 288, 3) and (pad, scale) == (48.0, 4.0)
    weights = image[..., 0].astype(np.float64)
    weights[weights < 64] = 0  # the blob, without cubic ringing
    ys, xs = np.indices(weights.shape)
    total = weights.sum()
    centre = ((xs + 0.5) * weights).sum() / total, ((ys + 0.5) * weights).sum() / total
    normalised = np.array([[centre[0] / 288, centre[1] / 288, 0.01]])
    back = teacher.to_face_pixels(normalised, image.shape[:2], pad, scale)
    np.testing.assert_allclose(back[0, :2], (30.5, 10.5), atol=0.05)
    assert back[0, 2] == pytest.approx(0.01 * 288 / 4)   # z on the scale of x


def test_read_fer2013_and_a_malformed_row(tmp_path):
    good = tmp_path / "fer.csv.gz"
    pixels = " ".join(str(i % 256) for i in range(2304))
    with gzip.open(good, "wt") as f:
        f.write("emotion,pixels,Usage\n")
        f.write(f"3,{pixels},Training\n4,{pixels},PrivateTest\n")
    faces, usage = teacher.read_fer2013(str(good))
    assert faces.shape == (2, 48, 48) and faces.dtype == np.uint8 and faces[0, 0, 5] == 5
    assert usage.tolist() == ["Training", "PrivateTest"]
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(ValueError, match="line 2"):
        teacher.read_fer2013(str(bad))


def test_a_missing_data_file_is_one_sentence_and_exit_2(tmp_path, capsys):
    code = teacher.main(["--data", str(tmp_path / "nope.csv.gz"), "--out", str(tmp_path / "o.npz")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no FER2013 file at") and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_the_script_says_where_mediapipe_is_when_it_is_missing(tmp_path, capsys):
    try:
        import mediapipe  # noqa: F401
        pytest.skip("mediapipe is installed here: the message is for environments without it")
    except ImportError:
        pass
    data = tmp_path / "fer.csv"
    data.write_text("emotion,pixels,Usage\n")
    assert teacher.main(["--data", str(data), "--out", str(tmp_path / "o.npz")]) == 2
    assert "mediapipe is not installed" in capsys.readouterr().err


def test_the_mesh_on_a_shared_photo_at_48px_puts_the_parts_in_order():
    pytest.importorskip("mediapipe", reason="MediaPipe runs only in a venv of its own "
                        "(README: the landmark model), never in the project's or CI's")
    import cv2
    image = cv2.imread(f"{MEDIA}/single_face.jpg", cv2.IMREAD_GRAYSCALE)
    if image is None:
        pytest.skip(f"no shared photo at {MEDIA}/single_face.jpg")
    labelled = teacher.label_face48(teacher.new_mesh(), cv2.resize(image, (48, 48),
                                                                  interpolation=cv2.INTER_AREA))
    assert labelled is not None
    points, pose = labelled
    right, left = ibug68.eye_centres(points)
    assert right[0] < left[0]                                          # right eye image-left
    assert max(right[1], left[1]) < points[30, 1] < points[ibug68.MOUTH, 1].mean()
    assert np.abs(pose).max() < 20                                     # a frontal face
