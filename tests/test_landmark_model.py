"""The landmark model's pieces: labels that move with the pixels under augmentation, the
geometry head's units, FaceNet starting from the mobile weights, the teacher labels lined
up by source row, and a short training run of the head (skipped without FER2013)."""

import numpy as np
import pytest

import nnlite
from nnlite.fold import fold_batch_norm
from emotion.training import augment
from emotion.cnn import models
from emotion.errors import UserError
from emotion.face import geometry
from emotion.face.ibug68 import FLIP
from emotion.training import landmark_labels
from tests.conftest import FER2013_CSV


def blob_image(x, y, size=48, sigma=1.2):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def peak(image):
    y, x = np.unravel_index(np.argmax(image), image.shape)
    return float(x), float(y)


@pytest.mark.parametrize("mirror", [False, True])
def test_a_point_moves_where_its_pixels_move(mirror):
    rng = np.random.default_rng(5)
    points = rng.uniform(14, 34, (1, 68, 2)).astype(np.float32)
    j = 40  # one point of the subject's right eye: drawn alone, then looked for
    image = blob_image(*(points[0, j] - 0.5))[None, None]
    for _ in range(5):
        angle = np.deg2rad(rng.uniform(-15, 15, 1))
        scale = 1 + rng.uniform(-0.1, 0.1, 1)
        shift = rng.uniform(-4, 4, (1, 2))
        moved = augment.affine(image, angle, scale, shift, np.array([mirror]))
        new_points = augment.transform_points(points, angle, scale, shift, np.array([mirror]),
                                              (48, 48))
        # After a mirror the blob is the image-other eye's point: index FLIP[j]. Points are
        # continuous coordinates (pixel i covers [i, i + 1)), the peak a pixel index.
        i = FLIP[j] if mirror else j
        assert np.abs(np.array(peak(moved[0, 0])) + 0.5 - new_points[0, i]).max() <= 1.0


def eye_line_degrees(points):
    right, left = points[:, 36:42].mean(1), points[:, 42:48].mean(1)  # subject's right, left
    d = left - right
    return np.rad2deg(np.arctan2(d[:, 1], d[:, 0]))


def test_the_pose_follows_the_points():
    rng = np.random.default_rng(0)
    points = np.zeros((6, 68, 2), np.float32)
    points[:, 36:42] = [15, 20]   # the subject's right eye on the image's left
    points[:, 42:48] = [33, 20]
    points += rng.normal(0, 0.3, points.shape).astype(np.float32)
    pose = rng.uniform(-20, 20, (6, 3)).astype(np.float32)
    pose[:, 2] = eye_line_degrees(points)  # a roll that agrees with the eye line
    angle = np.deg2rad(rng.uniform(-15, 15, 6))
    mirror = np.array([False, True] * 3)
    new_points = augment.transform_points(points, angle, np.ones(6), np.zeros((6, 2)), mirror,
                                          (48, 48))
    new_pose = augment.transform_pose(pose, angle, mirror)
    np.testing.assert_allclose(new_pose[:, 2], eye_line_degrees(new_points), atol=1e-3)
    np.testing.assert_allclose(new_pose[:, 1], pose[:, 1])  # pitch never changes
    np.testing.assert_allclose(new_pose[:, 0], np.where(mirror, -pose[:, 0], pose[:, 0]))


def test_the_same_seed_gives_the_same_images_with_or_without_labels():
    batch = np.random.default_rng(1).random((4, 1, 48, 48), dtype=np.float32)
    points = np.full((4, 68, 2), 24, np.float32)
    plain = augment.Augmenter()(batch, np.random.default_rng(7))
    with_labels, _, _ = augment.Augmenter()(batch, np.random.default_rng(7), points,
                                            np.zeros((4, 3), np.float32))
    np.testing.assert_array_equal(plain, with_labels)


def test_mirroring_twice_gives_the_labels_back():
    rng = np.random.default_rng(2)
    points = rng.uniform(5, 43, (3, 68, 2)).astype(np.float32)
    pose = rng.uniform(-30, 30, (3, 3)).astype(np.float32)
    zero, one, none = np.zeros(3), np.ones(3), np.zeros((3, 2))
    mirror = np.ones(3, bool)
    twice = augment.transform_points(augment.transform_points(points, zero, one, none, mirror,
                                                              (48, 48)),
                                     zero, one, none, mirror, (48, 48))
    np.testing.assert_allclose(twice, points, atol=1e-5)
    np.testing.assert_allclose(augment.transform_pose(augment.transform_pose(pose, zero, mirror),
                                                      zero, mirror), pose, atol=1e-5)


def test_geometry_units_round_trip():
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 48, (5, 68, 2)).astype(np.float32)
    pose = rng.uniform(-40, 40, (5, 3)).astype(np.float32)
    encoded = geometry.encode(points, pose)
    assert encoded.shape == (5, models.GEOMETRY_OUTPUTS) and encoded.dtype == np.float32
    assert np.abs(encoded[:, :136]).max() <= 0.5 + 1e-6  # the crop's edges are +-0.5
    back_points, back_pose = geometry.decode(encoded)
    np.testing.assert_allclose(back_points, points, atol=1e-4)
    np.testing.assert_allclose(back_pose, pose, atol=1e-4)


def test_face_net_starts_as_the_shipped_mobile_net():
    from emotion.cnn.classifier import shipped_weights_path

    path = shipped_weights_path("mobile_fer2013")
    mobile, face = models.build("mobile"), models.build("mobile_face")
    nnlite.load(mobile, path)
    arrays, _ = nnlite.serialization.load_arrays(path)
    fresh = models.init_from(face, arrays, str(path))
    assert fresh and all(name.startswith(("geometry.", "presence.")) for name in fresh)
    x = nnlite.Tensor(np.random.default_rng(4).random((3, 1, 48, 48), dtype=np.float32))
    mobile.eval(), face.eval()
    with nnlite.no_grad():
        expected = mobile(x).data
        logits, geo, presence = face.geometry_forward(x)
        folded_logits, folded_geo, folded_presence = fold_batch_norm(face).geometry_forward(x)
    np.testing.assert_allclose(face(x).data, expected, atol=1e-5)
    np.testing.assert_allclose(logits.data, expected, atol=1e-5)
    assert geo.shape == (3, models.GEOMETRY_OUTPUTS) and geo.dtype == np.float32
    np.testing.assert_allclose(folded_logits.data, expected, atol=1e-4)
    np.testing.assert_allclose(folded_geo.data, geo.data, atol=1e-4)
    assert presence.shape == (3,) and presence.dtype == np.float32
    np.testing.assert_allclose(folded_presence.data, presence.data, atol=1e-4)


def teacher_file(path, rows, source_sha256, found=None, jitter=None):
    """A teacher file: random points and poses, or with `jitter` one random template for
    every row moved by that many pixels (something a network can learn in a few steps)."""
    rng = np.random.default_rng(6)
    if jitter is None:
        landmarks = rng.uniform(8, 40, (rows, 68, 2)).astype(np.float32)
        pose = rng.uniform(-20, 20, (rows, 3)).astype(np.float32)
    else:
        template = rng.uniform(12, 36, (68, 2))
        landmarks = (template + rng.normal(0, jitter, (rows, 68, 2))).astype(np.float32)
        pose = rng.normal(0, 5, (rows, 3)).astype(np.float32)
    found = np.ones(rows, bool) if found is None else found
    landmarks[~found] = np.nan
    pose[~found] = np.nan
    np.savez(path, landmarks=landmarks, pose=pose, found=found,
             source_sha256=np.array(source_sha256))
    return landmarks, pose


def test_labels_are_taken_by_source_row_and_missing_ones_masked(tmp_path):
    source = tmp_path / "fer.csv"
    source.write_text("emotion,pixels,Usage\n")
    found = np.array([True, False, True, True])
    landmarks, pose = teacher_file(tmp_path / "t.npz", 4, landmark_labels.file_sha256(source), found)
    labels = landmark_labels.load_labels(tmp_path / "t.npz", source)
    points, got_pose, has = landmark_labels.targets_for(labels, np.array([4, 2, 1]))
    assert has.tolist() == [True, False, True]
    np.testing.assert_array_equal(points[0], landmarks[3])
    np.testing.assert_array_equal(got_pose[2], pose[0])
    assert np.isfinite(points).all() and np.isfinite(got_pose).all()  # the loss never sees NaN


def test_labels_of_another_file_are_refused(tmp_path):
    source = tmp_path / "fer.csv"
    source.write_text("emotion,pixels,Usage\n")
    teacher_file(tmp_path / "t.npz", 4, "0" * 64)
    with pytest.raises(UserError, match="another data file"):
        landmark_labels.load_labels(tmp_path / "t.npz", source)
    labels = {"landmarks": np.zeros((2, 68, 2), np.float32),
              "pose": np.zeros((2, 3), np.float32), "found": np.ones(2, bool)}
    with pytest.raises(UserError, match="made for another file"):
        landmark_labels.targets_for(labels, np.array([3]))


def test_errors_by_hand():
    points = np.zeros((1, 68, 2))
    points[0, 36], points[0, 45] = [10, 20], [30, 20]  # inter-ocular distance 20
    pred = points.copy()
    pred[0, :, 0] += 1.0  # every point 1 pixel off: NME 1/20
    e = landmark_labels.errors(pred, [[5, -2, 1]], points, [[2, 0, 0]], [True])
    assert e["nme"] == pytest.approx(0.05)
    assert (e["yaw_mae"], e["pitch_mae"], e["roll_mae"]) == (3, 2, 1)


needs_fer2013 = pytest.mark.skipif(not FER2013_CSV.exists(),
                                   reason=f"FER2013 not found at {FER2013_CSV}")


def geometry_config(tmp_path, labels, **overrides):
    config = dict(data=str(FER2013_CSV), model="mobile_face", epochs=2, batch_size=32, lr=0.02,
                  optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=5e-4,
                  schedule="none", warmup=0, label_smoothing=0.0, class_weights=False,
                  no_augment=False, early_stopping=0, limit=96, seed=3, ferplus=None,
                  skip_bad_rows=False, init="mobile_fer2013", landmarks=str(labels), quiet=True)
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def fer_teacher_file(tmp_path_factory):
    """Labels for every FER2013 row: the same frontal-ish points for every face, jittered
    (the real teacher file is made by landmark_teacher.py in MediaPipe's environment)."""
    from emotion.training.data import load_fer2013

    rows = load_fer2013(FER2013_CSV).rows
    n = int(max(r.max() for r in rows.values()))
    path = tmp_path_factory.mktemp("teacher") / "fer_teacher.npz"
    found = np.ones(n, bool)
    found[::7] = False  # some rows without a mesh, as MediaPipe leaves some
    teacher_file(path, n, landmark_labels.file_sha256(FER2013_CSV), found, jitter=0.5)
    return path


@needs_fer2013
def test_a_frozen_trunk_trains_only_the_geometry_head(tmp_path, fer_teacher_file):
    from emotion.commands import train

    config = geometry_config(tmp_path, fer_teacher_file, freeze_trunk=True)
    trainer = train.Trainer(config, tmp_path / "run", train.choose_backend(None))
    result = trainer.fit(progress=False)
    assert result["epochs_done"] == 2
    from emotion.cnn.classifier import shipped_weights_path

    mobile = models.build("mobile")
    nnlite.load(mobile, shipped_weights_path("mobile_fer2013"))
    trained = trainer.model.state_dict()
    for name, array in mobile.state_dict().items():  # batch-norm statistics included
        np.testing.assert_array_equal(trained[name], array, err_msg=name)
    history = trainer.state["history"]
    assert all(row["val_nme"] is not None for row in history)
    best = models.build("mobile_face")
    nnlite.load(best, tmp_path / "run" / "best.npz")  # the whole model, head included


@needs_fer2013
def test_a_joint_run_moves_the_trunk_and_lowers_the_geometry_loss(tmp_path, fer_teacher_file):
    from emotion.commands import train

    config = geometry_config(tmp_path, fer_teacher_file, epochs=3, no_augment=True)
    trainer = train.Trainer(config, tmp_path / "run", train.choose_backend(None))
    trainer.fit(progress=False)
    nme = [row["val_nme"] for row in trainer.state["history"]]
    assert nme[-1] < nme[0]
    from emotion.cnn.classifier import shipped_weights_path

    shipped, _ = nnlite.serialization.load_arrays(shipped_weights_path("mobile_fer2013"))
    assert not np.array_equal(trainer.model.state_dict()["0.W"], shipped["0.W"])


def test_landmarks_need_a_model_with_a_geometry_head(tmp_path):
    from emotion.commands import train

    config = geometry_config(tmp_path, tmp_path / "none.npz", model="mobile", init=None)
    with pytest.raises(UserError, match="geometry head"):
        train.Trainer(config, tmp_path / "run", "numpy").fit(progress=False)


def test_evaluate_scores_the_landmarks_against_the_teacher(tmp_path, capsys, monkeypatch):
    """`emotion evaluate --landmarks`: the model's points and pose against the teacher's
    labels of the split's rows; labels equal to the model's own answers score 0."""
    import json

    from emotion.cli import main as cli_main
    from emotion.cnn.classifier import EmotionClassifier
    from emotion.cnn.preprocess import PreprocessConfig, preprocess
    from emotion.training.data import load_fer2013
    from tests.test_train_evaluate import tiny_csv

    monkeypatch.setenv("EMOTION_CACHE", str(tmp_path / "cache"))
    data = tiny_csv(tmp_path / "t.csv")
    weights = tmp_path / "face.npz"
    model = models.build("mobile_face")
    nnlite.save(model, weights, meta={"model": "mobile_face",
                                      "preprocess": PreprocessConfig().to_dict()})
    classifier = EmotionClassifier.load(str(weights), "numpy")
    dataset = load_fer2013(data)
    images, _ = dataset.split("PrivateTest")
    _, out, _ = classifier.predict_geometry_batch(preprocess(images, classifier.preprocess_config))
    points, pose = geometry.decode(out)
    rows = 80
    labels = np.full((rows, 68, 2), np.nan, np.float32)
    angles = np.full((rows, 3), np.nan, np.float32)
    at = dataset.rows["PrivateTest"] - 1
    labels[at], angles[at] = points, pose
    angles[at[0]] += [3.0, 0.0, 0.0]  # one face 3 degrees of yaw off
    teacher = tmp_path / "teacher.npz"
    np.savez(teacher, landmarks=labels, pose=angles, found=np.isfinite(angles).all(1),
             source_sha256=np.array(landmark_labels.file_sha256(data)))
    assert cli_main(["evaluate", "--data", str(data), "--weights", str(weights), "--backend",
                     "numpy", "--landmarks", str(teacher), "--json", "--quiet",
                     "--out", str(tmp_path / "r")]) == 0
    report = json.loads(capsys.readouterr().out)["landmarks"]
    assert report["labelled"] == len(at)
    assert report["nme"] == pytest.approx(0, abs=1e-5)
    assert report["yaw_mae"] == pytest.approx(3.0 / len(at), abs=1e-3)
