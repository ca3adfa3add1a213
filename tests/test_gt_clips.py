"""The ground-truth clips' boxes are where the faces are drawn, the scorer counts a miss, a
false box and an identity switch as it says, and a peer without its venv is skipped with the
reason (benchmarks/gt_clips.py, gt_score.py, peers/compare.py)."""

import json
import math

import cv2
import numpy as np
import pytest

from benchmarks import gt_clips, gt_score
from benchmarks.peers import compare

RED, GREEN = (0, 0, 255), (0, 255, 0)
REF = (40, 30, 40, 40)  # the synthetic photo's face box


def synthetic_photo():
    """A gray photo whose 'face' (REF) is red with a green square in its top-left quarter."""
    photo = np.full((100, 120, 3), 100, np.uint8)
    x, y, w, h = REF
    photo[y:y + h, x:x + w] = RED
    photo[y + 4:y + 14, x + 4:x + 14] = GREEN
    return photo


def colour_mask(frame, colour):
    return np.all(np.abs(frame.astype(int) - colour) < 60, axis=2)


@pytest.fixture
def clip(tmp_path, monkeypatch):
    monkeypatch.setattr(gt_clips, "load_photo", lambda photo: synthetic_photo())
    monkeypatch.setattr(gt_clips, "reference_boxes", lambda photo, cache=None: [REF])
    # A plain background, so that only the face can be red or green.
    monkeypatch.setattr(gt_clips, "busy_background",
                        lambda size, rng: np.full((size[1], size[0], 3), 100, np.uint8))
    # Three frames: upright at 60 px, then rolled +30 degrees, then half out on the left.
    path = gt_clips.FacePath("synthetic", 0, 0, 2, (
        (0.0, 100.0, 80.0, 60.0, 0.0), (0.5, 120.0, 90.0, 60.0, 30.0),
        (1.0, 10.0, 90.0, 60.0, 0.0)))
    video, labels = gt_clips.render("synthetic", (240, 180), 3, [path], seed=1, out_dir=tmp_path)
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return frames, json.loads(labels.read_text())


def test_the_box_of_an_upright_face_is_where_its_pixels_are(clip):
    frames, truth = clip
    assert len(frames) == 3 and truth["frames"] == 3
    (face,) = truth["per_frame"][0]["faces"]
    assert face["box"] == [70.0, 50.0, 60.0, 60.0] and face["visible"] == 1.0
    ys, xs = np.nonzero(colour_mask(frames[0], RED) | colour_mask(frames[0], GREEN))
    x, y, w, h = face["box"]
    # The red square's extent is the box, to a pixel or two of codec and resampling blur.
    assert abs(xs.min() - x) <= 2 and abs(ys.min() - y) <= 2
    assert abs(xs.max() + 1 - (x + w)) <= 2 and abs(ys.max() + 1 - (y + h)) <= 2


def test_a_rolled_face_keeps_its_centre_and_size_and_turns_clockwise(clip):
    frames, truth = clip
    (face,) = truth["per_frame"][1]["faces"]
    x, y, w, h = face["box"]
    assert (w, h) == (60.0, 60.0) and face["roll"] == 30.0
    face_pixels = colour_mask(frames[1], RED) | colour_mask(frames[1], GREEN)
    ys, xs = np.nonzero(face_pixels)
    assert abs(xs.mean() - (x + w / 2)) < 1.5 and abs(ys.mean() - (y + h / 2)) < 1.5
    assert abs(face_pixels.sum() - w * h) < 0.1 * w * h  # a rotation keeps the area
    # The green mark (the face's top-left: 11 photo px up and left of the centre, 16.5 at
    # this scale) turned +30 degrees about the centre, clockwise on screen (y down): to
    # (d cos - d sin, d sin + d cos) = (-6.0, -22.5), not (-22.5, -6.0) as anticlockwise.
    gy, gx = np.nonzero(colour_mask(frames[1], GREEN))
    a, d = math.radians(30), -11 * 60 / 40
    expected = (d * math.cos(a) - d * math.sin(a), d * math.sin(a) + d * math.cos(a))
    got = (gx.mean() - (x + w / 2), gy.mean() - (y + h / 2))
    assert abs(got[0] - expected[0]) < 3 and abs(got[1] - expected[1]) < 3


def test_a_face_leaving_the_frame_is_marked_partly_visible(clip):
    _, truth = clip
    (face,) = truth["per_frame"][2]["faces"]
    assert face["box"][0] == -20.0 and face["visible"] == pytest.approx(40 / 60, abs=1e-3)


def test_the_same_seed_makes_the_same_truth(tmp_path, monkeypatch):
    monkeypatch.setattr(gt_clips, "load_photo", lambda photo: synthetic_photo())
    monkeypatch.setattr(gt_clips, "reference_boxes", lambda photo, cache=None: [REF])
    recipes = [gt_clips.recipes(np.random.default_rng(7)) for _ in range(2)]
    assert recipes[0] == recipes[1]
    size, n, paths, pan = recipes[0]["gt_crowd_small"]
    assert len(paths) == 6 and all(40 <= k[3] <= 60 for p in paths for k in p.keys[:1])


# The scorer, on hand-made rows: one face at (10, 10, 40, 40) over four frames.
TRUTH = {"frames": 4, "per_frame": [
    {"frame": f, "faces": [{"id": 0, "box": [10, 10, 40, 40], "visible": 1.0}]}
    for f in range(3)] + [
    {"frame": 3, "faces": [{"id": 0, "box": [-25, 10, 40, 40], "visible": 0.375}]}]}

ROWS = """frame,time_s,track_id,x,y,w,h,emotion
0,0.0,1,12,11,40,40,happy
2,0.066,2,10,10,38,42,happy
2,0.066,3,150,150,40,40,sad
1,0.033,1,30,30,40,40,happy
3,0.1,2,-20,10,40,40,happy
"""


def test_the_scorer_counts_a_miss_a_false_box_and_an_id_switch(tmp_path):
    path = tmp_path / "video.csv"
    path.write_text(ROWS)
    result = gt_score.score(TRUTH, gt_score.read_video_csv(path))
    # Frame 0 a hit (track 1); frame 1 a box at IoU 0.14: a miss and a false box; frame 2 a
    # hit by track 2 (a switch from 1) and a box on nothing; frame 3 the face is mostly out
    # of view: not counted, and the box on it is not false either.
    assert result["true_faces"] == 3
    assert result["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["false_boxes_per_frame"] == pytest.approx(2 / 4)
    assert result["id_switches"] == 1


def test_a_system_without_ids_has_no_switch_count():
    reports = gt_score.boxes_per_frame([[[10, 10, 40, 40]], [], [[10, 10, 40, 40]], []])
    result = gt_score.score(TRUTH, reports)
    assert result["id_switches"] is None and result["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["false_boxes_per_frame"] == 0


def test_iou_at_the_threshold():
    assert gt_score.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert gt_score.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(1 / 3)
    truth = [{"box": (0, 0, 10, 10)}]
    assert gt_score.match(truth, [{"box": (0, 0, 10, 5)}]) == [(0, 0, 0.5)]
    assert gt_score.match(truth, [{"box": (0, 0, 10, 4.9)}]) == []


def test_a_peer_without_its_venv_is_skipped_with_the_reason(tmp_path, capsys):
    missing = str(tmp_path / "novenv" / "bin" / "python")
    results = compare.compare([tmp_path / "clip.mp4"], ["mediapipe", "fer"],
                              {"mediapipe": missing, "fer": missing}, rounds=1)
    assert set(results["skipped"]) == {"mediapipe", "fer"}
    for name, why in results["skipped"].items():
        assert f"{name} skipped: {missing} not found" in why and "venv" in why
    assert results["clips"] == {str(tmp_path / "clip.mp4"): {}}
    compare.report(results)
    out = capsys.readouterr().out
    assert "mediapipe skipped" in out and "fer skipped" in out
