"""Head pose (emotion.face.pose), eyebrows (emotion.face.detector), rotated search
(emotion.face.rotate) and the pose and parts in every output (predict --json,
video --csv/--jsonl)."""

import csv
import json
import math

import cv2
import numpy as np
import pytest

from benchmarks.pose import nearest, rotate_image, rotated_roll
from emotion.face.detector import (FaceDetector, FaceParts, PartsDetector, eyebrow_raise,
                                   find_eyebrow)
from emotion.io.images import to_gray8
from emotion.face.result import FaceResult
from emotion.face.pose import PROFILE_YAW, HeadPose, ProfileDetector, estimate_pose, pose_from_parts
from emotion.io.rows import COLUMNS, JSON_KEYS, RowWriter, face_rows, flat_row
from tests.test_pipeline_cli import fake_classifier, run_cli  # noqa: F401 (a fixture)
from tests.test_detect import MEDIA, needs_media


@pytest.fixture(scope="module")
def tools():
    return FaceDetector(), PartsDetector()


def gray_photo(name):
    return to_gray8(cv2.imread(str(MEDIA / name)))


def frontal(tools, name):
    """[(box, parts)] of the photo's faces with both eyes found."""
    detector, parts = tools
    gray = gray_photo(name)
    return gray, [(b, p) for b in detector.detect(gray)
                  for p in [parts.find(gray, b)] if len(p.eyes) == 2]


# -- roll ---------------------------------------------------------------------------------

@needs_media
@pytest.mark.parametrize("angle", [-20, -10, 10, 20])
def test_roll_follows_a_rotated_photo(tools, angle):
    detector, parts = tools
    gray, faces = frontal(tools, "single_face.jpg")
    (box, upright), = faces
    rotated = rotate_image(gray, angle)
    H, W = gray.shape
    a = math.radians(angle)  # where the face centre went
    dx, dy = box[0] + box[2] / 2 - W / 2, box[1] + box[3] / 2 - H / 2
    cx = W / 2 + dx * math.cos(a) - dy * math.sin(a)
    cy = H / 2 + dx * math.sin(a) + dy * math.cos(a)
    guess = (int(cx - box[2] / 2), int(cy - box[3] / 2), box[2], box[3])
    roll = rotated_roll(rotated, guess, detector, parts)
    assert roll is not None
    assert roll - upright.roll == pytest.approx(angle, abs=4)


@needs_media
def test_rotated_search_finds_a_face_the_upright_search_loses(tools):
    from emotion.face.rotate import find_rotated

    detector, parts = tools
    gray, ((box, upright),) = frontal(tools, "single_face.jpg")
    rotated = rotate_image(gray, 30)
    hits = find_rotated(rotated, detector, parts, near=box)
    assert hits, "no face in the rotated copies"
    hit = hits[0]
    assert abs(hit.angle) in (15.0, 30.0)
    assert hit.pose.roll == pytest.approx(30 + upright.roll, abs=5)
    assert hit.parts.roll == pytest.approx(hit.pose.roll, abs=1)  # mapped back: same roll
    x, y, w, h = hit.box  # in frame pixels, around the face
    assert 0 <= x < gray.shape[1] and 0 <= y < gray.shape[0] and w > 100 and h > 100
    # a track's face: about its own size (the window search's sizes), not the box around
    # the rotated box, which would grow a track frame after frame
    assert 0.7 * box[2] <= w <= 1.5 * box[2] and w == h


# -- yaw and pitch ------------------------------------------------------------------------

def mirrored(box, width):
    x, y, w, h = box
    return (width - x - w, y, w, h)


def test_mirrored_geometry_flips_yaw_and_keeps_pitch():
    box, mouth = (100, 100, 200, 200), (170, 240, 70, 35)
    eyes = [(140, 160, 40, 40), (225, 165, 40, 40)]
    pose = pose_from_parts(box, eyes, mouth)
    W = 500
    back = pose_from_parts(mirrored(box, W), sorted(mirrored(e, W) for e in eyes),
                           mirrored(mouth, W))
    assert pose.yaw == pytest.approx(-back.yaw, abs=1e-6) and pose.yaw != 0
    assert pose.pitch == pytest.approx(back.pitch, abs=1e-6)
    assert pose.roll == pytest.approx(-back.roll, abs=1e-6)


@needs_media
def test_mirrored_photo_flips_yaw_and_keeps_pitch(tools):
    detector, parts = tools
    gray, ((box, p),) = frontal(tools, "single_face.jpg")
    pose = pose_from_parts(box, p.eyes, p.mouth)
    flipped = cv2.flip(gray, 1)
    back_box = nearest(detector.detect(flipped), mirrored(box, gray.shape[1]))
    q = parts.find(flipped, back_box)
    back = pose_from_parts(back_box, q.eyes, q.mouth)
    assert abs(pose.yaw) > 3  # this man looks a little to the image's right
    assert np.sign(back.yaw) == -np.sign(pose.yaw)
    assert back.pitch == pytest.approx(pose.pitch, abs=6)


def test_strongly_turned_parts_give_a_large_yaw_of_the_right_sign():
    box = (0, 0, 100, 100)
    # Eyes and mouth slid toward the image's right, as when the face turns that way.
    right = pose_from_parts(box, [(38, 30, 18, 18), (66, 31, 14, 14)], (52, 72, 30, 15))
    left = pose_from_parts(box, [(20, 31, 14, 14), (44, 30, 18, 18)], (18, 72, 30, 15))
    assert right.yaw > 40 and left.yaw < -40
    assert pose_from_parts(box, [], None) == HeadPose()  # nothing found: nothing claimed


@needs_media
def test_profile_cascade_tells_the_side_of_a_face_whose_eyes_are_lost(tools):
    detector, parts = tools
    gray = gray_photo("two_faces.jpg")
    box = max(detector.detect(gray), key=lambda b: b[0])  # the man, turned to the right
    p = parts.find(gray, box)
    assert len(p.eyes) < 2
    profile = ProfileDetector()
    assert estimate_pose(gray, box, p.eyes, p.mouth, profile).yaw == PROFILE_YAW
    flipped, back = cv2.flip(gray, 1), mirrored(box, gray.shape[1])
    q = parts.find(flipped, back)
    assert estimate_pose(flipped, back, q.eyes, q.mouth, profile).yaw == -PROFILE_YAW


@needs_media
def test_pose_varies_across_faces(tools):
    _, faces = frontal(tools, "group_selfie.jpg")
    poses = [pose_from_parts(b, p.eyes, p.mouth) for b, p in faces]
    assert len(poses) >= 3
    for name in ("yaw", "pitch", "roll"):
        values = [getattr(q, name) for q in poses]
        assert np.std(values) > 1.0, (name, values)
        assert all(abs(v) < 60 for v in values)  # frontal faces: no wild angles


# -- eyebrows -----------------------------------------------------------------------------

@needs_media
@pytest.mark.parametrize("name", ["single_face.jpg", "group_selfie.jpg"])
def test_eyebrows_above_the_eyes_of_frontal_faces(tools, name):
    _, faces = frontal(tools, name)
    found = 0
    for box, p in faces:
        assert len(p.eyebrows) == len(p.eyes) == 2
        for eye, brow in zip(p.eyes, p.eyebrows):
            if brow is None:
                continue
            found += 1
            assert brow[1] + brow[3] <= eye[1] + eye[3] / 2   # above the eye's centre
            assert brow[1] >= eye[1] - eye[3]                 # but not far above it
            assert brow[0] < eye[0] + eye[2] and eye[0] < brow[0] + brow[2]  # over it
        if any(b is not None for b in p.eyebrows):
            assert 0.03 < p.eyebrow_raise < 0.3
    assert found >= 0.8 * 2 * len(faces)


@needs_media
def test_no_eyebrow_invented_on_a_blank_eye_region(tools):
    gray, ((box, p),) = frontal(tools, "single_face.jpg")
    blank = gray.copy()
    for ex, ey, ew, eh in p.eyes:  # paint the eye and all above it with the skin's mean
        blank[max(0, ey - 2 * eh):ey + eh, ex - 5:ex + ew + 5] = int(gray[ey:ey + eh,
                                                                          ex:ex + ew].mean())
    assert [find_eyebrow(blank, e) for e in p.eyes] == [None, None]
    noise = np.clip(128 + np.random.default_rng(0).normal(0, 10, (200, 200)), 0, 255)
    assert find_eyebrow(noise.astype(np.uint8), (80, 80, 40, 40)) is None
    assert find_eyebrow(np.full((200, 200), 90, np.uint8), (80, 80, 40, 40)) is None
    assert eyebrow_raise(p.eyes, [None, None], box) is None


# -- the outputs --------------------------------------------------------------------------

def test_a_face_without_parts_gives_nulls_in_every_output(tmp_path):
    result = FaceResult.build(1, (10, 20, 30, 40), np.full(7, 1 / 7, np.float32), [])
    assert result.pose_dict() == {"yaw": None, "pitch": None, "roll": None}
    assert result.parts_dict() == {"eyes": [], "eyebrows": [], "mouth": None,
                                   "eyebrow_raise": None}
    (row,) = face_rows(3, 0.1, [result])
    assert list(row) == JSON_KEYS
    flat = flat_row(row)
    assert list(flat) == COLUMNS
    assert all(flat[k] is None for k in COLUMNS[COLUMNS.index("yaw"):])
    writer = RowWriter(tmp_path / "f.csv", tmp_path / "f.jsonl")
    writer.write([row])
    writer.close()
    with open(tmp_path / "f.csv", newline="") as f:
        (line,) = csv.DictReader(f)
    assert line["yaw"] == "" and line["eye1_x"] == "" and line["mouth_h"] == ""
    assert json.loads((tmp_path / "f.jsonl").read_text())["parts"]["mouth"] is None


def test_parts_and_pose_flatten_into_fixed_columns():
    parts = FaceParts(eyes=[(1, 2, 3, 4), (5, 6, 7, 8)], mouth=(9, 10, 11, 12),
                      eyebrows=[None, (13, 14, 15, 16)], eyebrow_raise=0.12345)
    result = FaceResult.build(2, (0, 0, 50, 50), np.full(7, 1 / 7, np.float32), parts.eyes,
                              parts=parts, pose=HeadPose(yaw=10.04, pitch=-3.0, roll=2.26))
    flat = flat_row(face_rows(0, 0.0, [result])[0])
    assert (flat["yaw"], flat["pitch"], flat["roll"]) == (10.0, -3.0, 2.3)
    assert [flat[f"eye2_{k}"] for k in "xywh"] == [5, 6, 7, 8]
    assert flat["brow1_x"] is None and [flat[f"brow2_{k}"] for k in "xywh"] == [13, 14, 15, 16]
    assert [flat[f"mouth_{k}"] for k in "xywh"] == [9, 10, 11, 12]
    assert flat["eyebrow_raise"] == 0.1235


@needs_media
def test_predict_json_carries_pose_and_parts_in_image_pixels(capsys, fake_classifier,
                                                             tmp_path):
    code, out, _ = run_cli(capsys, "predict", MEDIA / "single_face.jpg", "--json",
                           "--rotations", "--annotate", tmp_path, "--show-parts")
    assert code == 0
    (face,) = json.loads(out)["faces"]
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert all(isinstance(v, float) for v in face["pose"].values())
    parts = face["parts"]
    assert set(parts) == {"eyes", "eyebrows", "mouth", "eyebrow_raise"}
    x, y, w, h = face["box"]
    assert len(parts["eyes"]) == 2 and len(parts["eyebrows"]) == 2
    for ex, ey, ew, eh in parts["eyes"] + [parts["mouth"]]:
        assert x <= ex and ex + ew <= x + w and y <= ey and ey + eh <= y + h
    assert (tmp_path / "single_face.annotated.png").is_file()


@needs_media
def test_video_csv_and_jsonl_carry_pose_and_parts(capsys, fake_classifier, tmp_path):
    pd = pytest.importorskip("pandas")
    csv_path, jsonl = tmp_path / "f.csv", tmp_path / "f.jsonl"
    clip = tmp_path / "clip.mp4"
    cap = cv2.VideoCapture(str(MEDIA / "woman_talking.mp4"))
    frames = [cap.read()[1] for _ in range(12)]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30,
                             frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    code, _, _ = run_cli(capsys, "video", clip, "--csv", csv_path, "--jsonl", jsonl,
                         "--out", tmp_path / "out.mp4", "--show-parts")
    assert code == 0
    table = pd.read_csv(csv_path)
    assert list(table.columns) == COLUMNS and len(table) > 0
    assert table["roll"].notna().any() and table["eye1_x"].notna().any()
    assert all(table[c].dtype.kind == "f" or table[c].dtype.kind == "i"
               for c in COLUMNS[COLUMNS.index("yaw"):COLUMNS.index("landmarks")])  # numbers
    points = json.loads(table["landmarks"].iloc[0])  # the 68 points, one JSON text column
    assert len(points) == 68 and all(len(p) == 2 for p in points)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert list(rows[0]) == JSON_KEYS
    assert set(rows[0]["pose"]) == {"yaw", "pitch", "roll"}
    assert set(rows[0]["parts"]) == {"eyes", "eyebrows", "mouth", "eyebrow_raise"}
