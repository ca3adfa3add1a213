"""The face pipeline and the predict / video / live commands, with a fake classifier.

`emotion.video.pipeline.load_classifier` is replaced by a fake whose probabilities depend on the
crop's brightness, so everything runs without trained weights and in a few seconds.
Camera failures are simulated by replacing cv2.VideoCapture with a fake capture.
"""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion import cli

from emotion.commands import live

from emotion.video import pipeline
from emotion.video.follow import FollowPipeline
from emotion.face.detector import PHOTO_CONFIG, FaceDetector
from emotion.labels import EMOTIONS
from emotion.io.images import read_image, to_bgr8, to_gray8
from emotion.video.sources import count_frames
from emotion.io.rows import COLUMNS, JSON_KEYS

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(),
                                 reason=f"shared test media not found at {MEDIA}")


class FakeClassifier:
    """`predict_faces` like EmotionClassifier's; records the batch sizes it was called with."""

    def __init__(self):
        self.batch_sizes = []

    def predict_faces(self, crops):
        self.batch_sizes.append(len(crops))
        probs = np.full((len(crops), len(EMOTIONS)), 0.05, np.float32)
        for i, crop in enumerate(crops):
            assert crop.dtype == np.uint8 and crop.ndim == 2 and crop.size > 0
            probs[i, EMOTIONS.index("happy")] += crop.mean() / 255.0
        return probs / probs.sum(axis=1, keepdims=True)


@pytest.fixture
def fake_classifier(monkeypatch):
    fake = FakeClassifier()
    monkeypatch.setattr(pipeline, "load_classifier", lambda weights=None, backend=None: fake)
    return fake


def run_cli(capsys, *argv):
    """Run `emotion ARGV...`; return (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# ---------------------------------------------------------------------------------------
# Pixel formats and image reading
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("image", [
    np.zeros((4, 5), np.uint8), np.zeros((4, 5, 1), np.uint8), np.zeros((4, 5, 3), np.uint8),
    np.zeros((4, 5, 4), np.uint8), np.zeros((4, 5), np.uint16), np.zeros((4, 5, 3), np.uint16),
    np.zeros((4, 5, 3), np.float32)])
def test_any_image_becomes_8_bit_gray_and_bgr(image):
    assert to_gray8(image).shape == (4, 5) and to_gray8(image).dtype == np.uint8
    assert to_bgr8(image).shape == (4, 5, 3) and to_bgr8(image).dtype == np.uint8


def test_sixteen_bit_is_scaled_not_truncated():
    assert to_gray8(np.full((2, 2), 65535, np.uint16))[0, 0] == 255
    assert to_gray8(np.full((2, 2), 32768, np.uint16))[0, 0] == 128


# ---------------------------------------------------------------------------------------
# FollowPipeline
# ---------------------------------------------------------------------------------------

@needs_media
def test_pipeline_batches_all_faces_of_a_frame_in_one_call():
    fake = FakeClassifier()
    image = cv2.imread(str(MEDIA / "group_selfie.jpg"))
    faces = FollowPipeline(fake, pipeline.load_landmarker(None),
                           detector=FaceDetector(PHOTO_CONFIG), detect_every=1)
    results = faces.process(image, timestamp=0.0)
    assert fake.batch_sizes == [6]
    assert sorted(r.track_id for r in results) == [1, 2, 3, 4, 5, 6]
    for r in results:
        assert r.probabilities.shape == (7,) and r.probabilities.dtype == np.float32
        assert r.emotion in EMOTIONS and r.intensity in ("low", "medium", "high")
        json.dumps(r.to_dict())  # serialisable as is
    faces.draw(image, results, fps=25.0)
    assert set(faces.timings.ms_per_frame()) >= {"detect", "classify", "draw"}


def test_pipeline_on_frames_without_faces_and_odd_formats():
    class NoLandmarks:
        def predict_geometry(self, crops):
            raise AssertionError("the landmark model was called on a frame without faces")

    fake = FakeClassifier()
    faces = FollowPipeline(fake, NoLandmarks(), detect_every=2)
    for frame in (np.zeros((3, 3), np.uint8), np.zeros((240, 320, 4), np.uint8),
                  np.zeros((240, 320, 3), np.uint16), np.zeros((240, 320), np.uint8)):
        assert faces.process(frame) == []
    assert fake.batch_sizes == []  # nothing to classify: the CNN is not even called


# ---------------------------------------------------------------------------------------
# emotion predict
# ---------------------------------------------------------------------------------------

@needs_media
def test_predict_gray_rgba_16bit_tiny_and_missing(tmp_path, capsys, fake_classifier):
    face = cv2.imread(str(MEDIA / "single_face.jpg"))
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), face.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "tiny.png"), face[:6, :6])
    (tmp_path / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    assert read_image(tmp_path / "deep.png").dtype == np.uint16  # the 16 bits are kept

    names = ["gray.png", "rgba.png", "deep.png", "tiny.png", "corrupt.jpg", "missing.jpg"]
    code, out, err = run_cli(capsys, "predict", *[tmp_path / n for n in names], "--json",
                             "--annotate", tmp_path / "annotated")
    assert code == 1  # two inputs failed ...
    records = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}
    assert set(records) == set(names)  # ... and all the others were still processed
    for name in ("gray.png", "rgba.png", "deep.png"):
        (found,) = records[name]["faces"]
        assert set(found) == {"box", "emotion", "probabilities", "intensity", "pose", "parts",
                              "landmarks"}
        assert list(found["probabilities"]) == list(EMOTIONS)
        assert sum(found["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert (tmp_path / "annotated" / f"{Path(name).stem}.annotated.png").is_file()
    assert records["tiny.png"]["faces"] == []
    assert "corrupt.jpg" in records["corrupt.jpg"]["error"]
    assert "image not found" in records["missing.jpg"]["error"]
    assert "missing.jpg" in err and "corrupt.jpg" in err


@needs_media
def test_predict_folder_as_a_table(capsys, fake_classifier):
    code, out, err = run_cli(capsys, "predict", MEDIA)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 6 + 1 + 2  # one line per face: group_selfie, single_face, two_faces
    assert all(any(e in line for e in EMOTIONS) for line in lines)


def test_predict_only_missing_file_fails_cleanly(capsys, fake_classifier):
    code, out, err = run_cli(capsys, "predict", "no/such/photo.jpg")
    assert code == 1
    assert "image not found: no/such/photo.jpg" in err


# ---------------------------------------------------------------------------------------
# emotion video
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def talking_video_outputs(tmp_path_factory):
    """`emotion video woman_talking.mp4 --out --csv --jsonl`, run once for several tests."""
    if not MEDIA.is_dir():
        pytest.skip(f"shared test media not found at {MEDIA}")
    folder = tmp_path_factory.mktemp("video")
    paths = {"out": folder / "annotated.mp4", "csv": folder / "frames.csv",
             "jsonl": folder / "frames.jsonl"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "load_classifier",
                      lambda weights=None, backend=None: FakeClassifier())
        code = cli.main(["video", str(MEDIA / "woman_talking.mp4"), "--out", str(paths["out"]),
                         "--csv", str(paths["csv"]), "--jsonl", str(paths["jsonl"]),
                         "--detect-every", "2"])
    assert code == 0
    return paths


def test_video_writes_every_frame(talking_video_outputs):
    assert count_frames(talking_video_outputs["out"]) == 464  # decoded back, frame by frame


def test_video_rows_schema_and_one_track_for_the_woman(talking_video_outputs):
    with open(talking_video_outputs["csv"], newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    jsonl = [json.loads(line) for line in talking_video_outputs["jsonl"].read_text().splitlines()]
    assert len(jsonl) == len(rows) and list(jsonl[0]) == JSON_KEYS
    assert jsonl[10]["time_s"] == pytest.approx(jsonl[10]["frame"] / 29.97, abs=1e-3)
    for row in jsonl:
        assert sum(row[name] for name in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
        assert row["emotion"] in EMOTIONS and row["phase"] in ("neutral", "onset", "apex", "offset")

    frames_per_track = {}
    for row in jsonl:
        frames_per_track.setdefault(row["track_id"], set()).add(row["frame"])
    longest = max(len(frames) for frames in frames_per_track.values())
    assert longest >= 0.9 * 464  # one ID follows her through (almost) the whole clip


def test_video_missing_and_unsupported_inputs(tmp_path, capsys, fake_classifier):
    code, _, err = run_cli(capsys, "video", tmp_path / "nope.mp4", "--out", tmp_path / "o.mp4")
    assert code != 0 and "video not found" in err and "nope.mp4" in err
    fake_video = tmp_path / "notes.mp4"
    fake_video.write_text("not a video")
    code, _, err = run_cli(capsys, "video", fake_video, "--out", tmp_path / "o.mp4")
    assert code != 0 and "notes.mp4" in err
    code, _, err = run_cli(capsys, "video", fake_video)
    assert code != 0 and "nothing to write" in err


def write_clip(path, frames, size=(160, 120)):
    """A small mp4v video of the given BGR frames (resized to `size`)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for frame in frames:
        writer.write(cv2.resize(frame, size))
    writer.release()
    return path


@pytest.fixture(scope="module")
def short_talking_clip(tmp_path_factory):
    """The first 12 frames of woman_talking.mp4, written as a clip of their own."""
    if not MEDIA.is_dir():
        pytest.skip(f"shared test media not found at {MEDIA}")
    capture = cv2.VideoCapture(str(MEDIA / "woman_talking.mp4"))
    frames = [capture.read()[1] for _ in range(12)]
    capture.release()
    h, w = frames[0].shape[:2]
    return write_clip(tmp_path_factory.mktemp("clip") / "talking12.mp4", frames, (w, h))


def test_outputs_over_the_input_or_each_other_are_refused(tmp_path, capsys, fake_classifier,
                                                          no_gui):
    clip = write_clip(tmp_path / "clip.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 3)
    original = clip.read_bytes()
    (tmp_path / "link.mp4").symlink_to(clip)
    cases = [
        ("video", clip, "--out", clip),
        ("video", clip, "--csv", clip),
        ("video", clip, "--jsonl", tmp_path / "." / "clip.mp4"),
        ("video", clip, "--out", tmp_path / "link.mp4"),  # a symlink to the input
        ("video", clip.as_uri(), "--out", clip),  # file:///... is the same file
        ("live", "--source", clip, "--no-display", "--out", clip),
        ("live", "--source", clip, "--no-display", "--jsonl", clip),
    ]
    for argv in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "is the input video" in err and "another file name" in err, argv
        assert clip.read_bytes() == original, argv  # the input is untouched

    same = tmp_path / "same.txt"
    for argv in [("video", clip, "--csv", same, "--jsonl", same),
                 ("video", clip, "--out", tmp_path / "a.mp4", "--csv", tmp_path / "a.mp4"),
                 ("live", "--source", clip, "--no-display", "--out", same, "--jsonl", same)]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "are the same file" in err, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "link.mp4"]  # no output


@needs_media
@pytest.mark.parametrize("detect_every", [2, 1000])
def test_video_reports_a_face_from_the_frame_it_is_found(tmp_path, capsys, fake_classifier,
                                                          short_talking_clip, detect_every):
    table = tmp_path / "faces.csv"
    code, _, err = run_cli(capsys, "video", short_talking_clip, "--csv", table,
                           "--detect-every", detect_every)
    assert code == 0
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    # Her face is in every frame: reported from frame 0, and carried to the end even when the
    # detector runs only once.
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert {r["track_id"] for r in rows} == {"1"}


@needs_media
def test_video_of_a_single_photo_has_its_face(tmp_path, capsys, fake_classifier):
    table = tmp_path / "faces.csv"
    code, _, err = run_cli(capsys, "video", MEDIA / "single_face.jpg",
                           "--out", tmp_path / "o.mp4", "--csv", table)
    assert code == 0 and "1 face track, 1 row" in err
    assert count_frames(tmp_path / "o.mp4") == 1


# ---------------------------------------------------------------------------------------
# emotion live: cameras that fail, and never a window without a display
# ---------------------------------------------------------------------------------------

class FakeCapture:
    """Stands in for cv2.VideoCapture: may fail to open, and stops after `frames` frames
    (of the `declared_frames` its container would claim)."""

    def __init__(self, opened=True, frames=3, last_read=(False, None), declared_frames=0):
        self.opened, self.frames_left, self.last_read = opened, frames, last_read
        self.declared_frames = declared_frames

    def __call__(self, source):  # used as the VideoCapture "class"
        return self

    def isOpened(self):
        return self.opened

    def get(self, prop):
        # Webcams often report no fps and no frame count; a file declares its frame count.
        return float(self.declared_frames) if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0

    def read(self):
        if self.frames_left > 0:
            self.frames_left -= 1
            return True, np.full((120, 160, 3), 90, np.uint8)
        return self.last_read

    def release(self):
        pass


@pytest.fixture
def no_gui(monkeypatch):
    """Any attempt to open a window fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("cv2.imshow called without a display")
    monkeypatch.setattr(cv2, "imshow", forbidden)
    monkeypatch.setattr(cv2, "namedWindow", forbidden)


@pytest.mark.parametrize("camera, suggested", [(0, 1), (1, 0)])
def test_camera_that_does_not_open(capsys, monkeypatch, fake_classifier, no_gui, camera,
                                   suggested):
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(opened=False))
    code, _, err = run_cli(capsys, "live", "--source", camera, "--no-display")
    assert code == 1
    assert f"could not open camera {camera}" in err
    # It suggests another camera, never the one that just failed.
    assert f"--source {suggested}" in err and f"--source {camera}" not in err


@pytest.mark.parametrize("last_read", [(False, None), (True, None)])
def test_camera_that_stops_returning_frames(capsys, monkeypatch, fake_classifier, no_gui,
                                            last_read):
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(frames=3, last_read=last_read))
    code, _, err = run_cli(capsys, "live", "--source", "0", "--no-display")
    assert code == 1
    assert "camera 0 stopped returning frames after 3 frames" in err
    assert "NoneType" not in err


def test_has_display_follows_the_environment(monkeypatch):
    monkeypatch.setattr(live.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not live.has_display()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert live.has_display()


@needs_media
@pytest.mark.parametrize("display, flag", [(None, []), (":0", ["--no-display"])])
def test_live_never_opens_a_window_without_a_display(tmp_path, capsys, monkeypatch,
                                                     fake_classifier, no_gui, display, flag):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", display)
    else:
        monkeypatch.delenv("DISPLAY", raising=False)
    out, jsonl = tmp_path / "live.mp4", tmp_path / "faces.jsonl"
    code, _, err = run_cli(capsys, "live", "--source", MEDIA / "woman_talking.mp4", *flag,
                           "--max-frames", 12, "--out", out, "--jsonl", jsonl)
    assert code == 0  # a video file that ends (here: --max-frames) is a normal end
    assert count_frames(out) == 12
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert rows and list(rows[0]) == JSON_KEYS


@needs_media
def test_live_shows_frames_when_there_is_a_display(capsys, monkeypatch, fake_classifier):
    monkeypatch.setattr(live, "has_display", lambda: True)
    shown = []
    # The user presses q on the 5th frame.
    monkeypatch.setattr(live, "show_frame",
                        lambda image: shown.append(image.shape) or len(shown) < 5)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    code, _, err = run_cli(capsys, "live", "--source", MEDIA / "woman_talking.mp4")
    assert code == 0 and len(shown) == 5
    assert "quit after 5 frames" in err
    assert "warning" not in err  # stopping early on purpose is not a truncated file


# ---------------------------------------------------------------------------------------
# How a run ends: the frame limit, a file that stops decoding, a file with no frame
# ---------------------------------------------------------------------------------------

def fake_video_file(tmp_path, monkeypatch, frames, declared):
    """A video file path whose capture decodes `frames` frames of the `declared` count."""
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(frames=frames, declared_frames=declared))
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"stands in for a video")
    return path


@pytest.mark.parametrize("command", ["video", "live"])
def test_a_video_that_stops_decoding_early_is_reported(tmp_path, capsys, monkeypatch,
                                                       fake_classifier, no_gui, command):
    clip = fake_video_file(tmp_path, monkeypatch, frames=90, declared=464)
    argv = (["video", clip, "--csv", tmp_path / "faces.csv"] if command == "video" else
            ["live", "--source", clip, "--no-display", "--jsonl", tmp_path / "faces.jsonl"])
    code, _, err = run_cli(capsys, *argv)
    assert code == 0  # what was written is valid
    assert "stopped at frame 90 of the 464 the file declares" in err


@pytest.mark.parametrize("frames", [463, 464])
def test_a_frame_count_a_little_off_is_not_a_truncated_file(tmp_path, capsys, monkeypatch,
                                                            fake_classifier, frames):
    # The container's count is an estimate for some formats: a frame or two short is normal.
    clip = fake_video_file(tmp_path, monkeypatch, frames=frames, declared=464)
    code, _, err = run_cli(capsys, "video", clip, "--csv", tmp_path / "faces.csv")
    assert code == 0 and "warning" not in err


def test_live_says_the_frame_limit_ended_it(tmp_path, capsys, monkeypatch, fake_classifier,
                                            no_gui):
    clip = fake_video_file(tmp_path, monkeypatch, frames=20, declared=20)
    code, _, err = run_cli(capsys, "live", "--source", clip, "--no-display",
                           "--max-frames", 5, "--jsonl", tmp_path / "faces.jsonl")
    assert code == 0
    assert "at the frame limit (--max-frames), after 5 frames" in err
    assert "end of video" not in err and "warning" not in err


def test_live_prints_no_timings_when_no_frame_was_read(tmp_path, capsys, monkeypatch,
                                                       fake_classifier, no_gui):
    clip = fake_video_file(tmp_path, monkeypatch, frames=0, declared=0)
    code, _, err = run_cli(capsys, "live", "--source", clip, "--no-display")
    assert code == 1
    assert "could not read any frame from video" in err and "clip.mp4" in err
    assert "pipeline:" not in err and "frames/s" not in err
