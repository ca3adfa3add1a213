"""FER2013 loading: the three layouts (and .npz), every kind of bad row, the cache, FER+,
dataset discovery, and the real data set when it is present."""

import gzip
import os

import cv2
import numpy as np
import pytest

from emotion.training import data
from emotion.training.data import (SPLITS, class_counts, class_weights, find_dataset, load_fer2013,
                                   save_npz)
from emotion.errors import UserError
from tests.conftest import FER2013_CSV

FERPLUS_CSV = FER2013_CSV.parents[1] / "ferplus" / "fer2013new.csv.gz"


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    """Fallback caches of these tests go to a temporary folder, not ~/.cache."""
    monkeypatch.setenv("EMOTION_CACHE", str(tmp_path / "fallback-cache"))
    monkeypatch.delenv("EMOTION_DATA", raising=False)


def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def pixel_text(image):
    return " ".join(map(str, image.ravel()))


def write_csv(path, rows, header="emotion,pixels,Usage"):
    """rows: tuples of fields (already strings or numbers); .gz paths are gzip-compressed."""
    text = header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def kaggle_rows(images, labels, usage):
    return [(label, pixel_text(image), split) for image, label, split in zip(images, labels, usage)]


# -- the Kaggle CSV ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fer2013.csv", "fer2013.csv.gz"])
def test_kaggle_csv_plain_and_gzip(tmp_path, name):
    images = random_images(7)
    labels = [0, 3, 6, 1, 2, 4, 5]
    usage = ["Training", "Training", "PublicTest", "Training", "PrivateTest", "PublicTest",
             "Training"]
    source = write_csv(tmp_path / name, kaggle_rows(images, labels, usage))

    dataset = load_fer2013(source)

    assert dataset.layout == "csv" and dataset.skipped_rows == []
    for split in SPLITS:
        rows = [i for i, u in enumerate(usage) if u == split]
        x, y = dataset.split(split)
        assert x.dtype == np.float32 and x.shape == (len(rows), 1, 48, 48)
        assert y.dtype == np.int64 and y.tolist() == [labels[i] for i in rows]
        np.testing.assert_array_equal(x[:, 0], images[rows])  # raw 0..255, in file order


def test_split_accessor_names_the_available_splits(tmp_path):
    source = write_csv(tmp_path / "f.csv", kaggle_rows(random_images(1), [0], ["Training"]))
    with pytest.raises(UserError, match="unknown split 'Validation'.*Training, PublicTest, "
                                        "PrivateTest"):
        load_fer2013(source).split("Validation")


def test_an_empty_split_is_an_error_only_when_required(tmp_path):
    source = write_csv(tmp_path / "f.csv", kaggle_rows(random_images(2), [0, 1], ["Training"] * 2))
    dataset = load_fer2013(source)
    assert len(dataset.split("PublicTest")[1]) == 0
    with pytest.raises(UserError, match=r"f.csv has no PublicTest rows \(it has: Training 2\)\. "
                                        "Do this"):
        dataset.split("PublicTest", required=True, hint="Do this.")
    assert dataset.drawn_splits == ()


def test_two_column_csv_gets_a_seeded_stratified_split(tmp_path):
    labels = np.repeat(np.arange(7), 40)  # 40 per class -> 4 PublicTest, 4 PrivateTest each
    images = random_images(len(labels))
    rows = [(label, pixel_text(image)) for image, label in zip(images, labels)]
    source = write_csv(tmp_path / "two.csv", rows, header="emotion,pixels")

    first = load_fer2013(source, seed=1)
    assert first.layout == "csv-no-usage" and first.drawn_splits == SPLITS
    for split, per_class in [("Training", 32), ("PublicTest", 4), ("PrivateTest", 4)]:
        assert class_counts(first.split(split)[1]).tolist() == [per_class] * 7
    # Every image lands in exactly one split.
    everything = np.concatenate([first.split(s)[0][:, 0] for s in SPLITS])
    assert sorted(map(bytes, everything.astype(np.uint8))) == sorted(map(bytes, images))

    again = load_fer2013(source, seed=1)
    other = load_fer2013(source, seed=2)
    np.testing.assert_array_equal(again.split("PrivateTest")[0], first.split("PrivateTest")[0])
    assert not np.array_equal(other.split("PrivateTest")[0], first.split("PrivateTest")[0])
    assert len(load_fer2013(source, val_fraction=0.25).split("PublicTest")[1]) == 7 * 10


# -- the image-folder layout ---------------------------------------------------------------------
def write_image_folder(root, layout):
    """layout: {"train/happy": n, ...} -> writes n PNGs per folder; returns the images."""
    written = {}
    for i, (folder, count) in enumerate(layout.items()):
        (root / folder).mkdir(parents=True)
        images = random_images(count, seed=i)
        for j, image in enumerate(images):
            cv2.imwrite(str(root / folder / f"{j}.png"), image)
        written[folder] = images
    return written


def test_image_folder_layout(tmp_path):
    root = tmp_path / "faces"
    written = write_image_folder(root, {"train/happy": 4, "train/Sad": 4, "test/happy": 2,
                                        "test/ANGRY": 1})
    (root / "train" / "happy" / "notes.txt").write_text("not an image: ignored")
    big_color = np.dstack([random_images(1, seed=9)[0]] * 3).repeat(2, 0).repeat(2, 1)
    cv2.imwrite(str(root / "test" / "happy" / "big.jpg"), big_color)  # 96x96 BGR

    dataset = load_fer2013(root, val_fraction=0.25, seed=0)

    assert dataset.layout == "folders"
    x_test, y_test = dataset.split("PrivateTest")
    assert sorted(y_test.tolist()) == [0, 3, 3, 3]
    assert x_test.shape == (4, 1, 48, 48) and x_test.dtype == np.float32
    np.testing.assert_array_equal(x_test[y_test == 0][0, 0], written["test/ANGRY"][0])
    # PublicTest is a stratified quarter of train: one happy and one sad image.
    assert sorted(dataset.split("PublicTest")[1].tolist()) == [3, 4]
    assert sorted(dataset.split("Training")[1].tolist()) == [3, 3, 3, 4, 4, 4]
    assert dataset.drawn_splits == ("PublicTest",)


def test_image_folder_val_folder_is_public_test(tmp_path):
    root = tmp_path / "faces"
    write_image_folder(root, {"train/happy": 3, "val/happy": 2, "test/sad": 1})
    dataset = load_fer2013(root)
    assert [len(dataset.split(s)[1]) for s in SPLITS] == [3, 2, 1]
    assert dataset.drawn_splits == ()


def test_image_folder_errors(tmp_path):
    root = tmp_path / "faces"
    write_image_folder(root, {"train/happy": 1, "train/joy": 1, "test/happy": 1})
    with pytest.raises(UserError, match="joy: unknown class folder.*angry, disgust"):
        load_fer2013(root)

    broken = tmp_path / "broken"
    write_image_folder(broken, {"train/happy": 2, "test/happy": 1})
    (broken / "train" / "happy" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="bad.png cannot be read as an image"):
        load_fer2013(broken)
    dataset = load_fer2013(broken, skip_bad_rows=True)
    assert [(os.path.basename(w), why) for w, why in dataset.skipped_rows] == [
        ("bad.png", "cannot be read as an image")]


# -- bad rows --------------------------------------------------------------------------------
GOOD = pixel_text(random_images(1)[0])
WRONG_COUNT = " ".join(GOOD.split()[:-1])
BAD_ROWS = [
    # (emotion, pixels, Usage) of row 3, the expected problem
    ((0, WRONG_COUNT, "Training"), "has 2303 pixel values, expected 2304"),
    ((0, GOOD + " 7", "Training"), "has 2305 pixel values, expected 2304"),
    ((0, "", "Training"), "has 0 pixel values, expected 2304"),
    ((0, GOOD.replace(" ", " abc ", 1)[: -len(GOOD.split()[-1]) - 1], "Training"),
     "has a non-numeric pixel value 'abc'"),
    ((0, GOOD.replace(GOOD.split()[0], "1.5", 1), "Training"), "non-numeric pixel value '1.5'"),
    ((0, "300 " + GOOD.split(" ", 1)[1], "Training"), "has pixel value 300 outside 0..255"),
    ((0, "-5 " + GOOD.split(" ", 1)[1], "Training"), "has pixel value -5 outside 0..255"),
    ((0, "99999999999999999999 " + GOOD.split(" ", 1)[1], "Training"), "outside 0..255"),
    ((9, GOOD, "Training"), "has an unknown emotion label 9 (expected 0..6)"),
    (("x", GOOD, "Training"), "has a non-numeric emotion label 'x'"),
    (("", GOOD, "Training"), "has no emotion label"),
    ((0, GOOD, "Foo"), "has an unknown Usage 'Foo' (expected Training, PublicTest, PrivateTest)"),
]


@pytest.mark.parametrize("bad_row, problem", BAD_ROWS, ids=[p for _, p in BAD_ROWS])
def test_a_bad_row_is_named_with_its_row_number_and_problem(tmp_path, capsys, bad_row, problem):
    rows = kaggle_rows(random_images(5), [0, 1, 2, 3, 4], ["Training"] * 5)
    rows[2] = bad_row  # data row 3, line 4 of the file
    source = write_csv(tmp_path / "fer.csv", rows)

    with pytest.raises(UserError) as error:
        load_fer2013(source)
    message = str(error.value)
    assert "row 3 (line 4 of the file, the header being line 1)" in message
    assert problem in message and "--skip-bad-rows" in message

    dataset = load_fer2013(source, skip_bad_rows=True)
    assert len(dataset.skipped_rows) == 1
    row, reason = dataset.skipped_rows[0]
    assert row == 3 and problem in reason
    assert dataset.split("Training")[1].tolist() == [0, 1, 3, 4]
    assert "skipped 1 bad rows" in capsys.readouterr().err


def test_many_bad_rows_across_chunks_are_all_found(tmp_path, monkeypatch):
    # Small chunks so that the bad rows sit in different chunks and the halving search runs.
    monkeypatch.setattr(data.csv_file, "CHUNK_ROWS", 8)
    images = random_images(40)
    rows = kaggle_rows(images, [i % 7 for i in range(40)], ["Training"] * 40)
    bad = {1: "has 2303 pixel values", 17: "non-numeric pixel value 'x'",
           18: "pixel value 256 outside", 40: "unknown Usage"}
    rows[0] = (0, WRONG_COUNT, "Training")
    rows[16] = (0, "x " + GOOD.split(" ", 1)[1], "Training")
    rows[17] = (0, "256 " + GOOD.split(" ", 1)[1], "Training")
    rows[39] = (0, GOOD, "Nope")
    source = write_csv(tmp_path / "fer.csv", rows)

    with pytest.raises(UserError, match=r"row 1 \(line 2.*has 2303 pixel values.*3 more bad"):
        load_fer2013(source)
    with pytest.raises(UserError) as error:
        load_fer2013(source)
    # One readable message: the count and rows of the others, then what to do (in CLI terms).
    assert str(error.value).endswith(
        "expected 2304. There are 3 more bad rows (rows 17, 18, 40). Fix the file, or leave "
        "the bad rows out with --skip-bad-rows.")
    dataset = load_fer2013(source, skip_bad_rows=True)
    assert [row for row, _ in dataset.skipped_rows] == sorted(bad)
    for row, reason in dataset.skipped_rows:
        assert bad[row] in reason
    kept = [i for i in range(40) if i + 1 not in bad]
    np.testing.assert_array_equal(dataset.split("Training")[0][:, 0], images[kept])


def test_one_row_with_several_problems_lists_them_all(tmp_path):
    rows = kaggle_rows(random_images(2), [0, 1], ["Training"] * 2)
    rows[1] = (8, WRONG_COUNT, "Foo")
    source = write_csv(tmp_path / "fer.csv", rows)
    with pytest.raises(UserError, match=r"row 2 .* unknown emotion label 8 \(expected 0..6\); "
                                        "has 2303 pixel values, expected 2304; has an unknown "
                                        "Usage 'Foo'"):
        load_fer2013(source)


def test_blank_lines_keep_row_numbers_aligned_with_the_file(tmp_path):
    images = random_images(3)
    text = ("emotion,pixels,Usage\n" + f"0,{pixel_text(images[0])},Training\n\n"
            + f"9,{pixel_text(images[1])},Training\n")
    source = tmp_path / "fer.csv"
    source.write_text(text)
    with pytest.raises(UserError, match=r"row 3 \(line 4 of the file.*unknown emotion label 9"):
        load_fer2013(source)


def test_one_more_bad_row_reads_as_a_sentence(tmp_path):
    rows = kaggle_rows(random_images(3), [0, 1, 2], ["Training"] * 3)
    rows[0] = (9, GOOD, "Training")
    rows[2] = (8, GOOD, "Training")
    with pytest.raises(UserError, match=r"\(expected 0..6\)\. There is 1 more bad row \(row 3\)\. "
                                        "Fix the file"):
        load_fer2013(write_csv(tmp_path / "fer.csv", rows))


def test_a_missing_header_is_named_without_dumping_the_row(tmp_path):
    source = tmp_path / "fer.csv"
    source.write_text(f"0,{GOOD},Training\n1,{GOOD},Training\n")
    with pytest.raises(UserError) as error:
        load_fer2013(source)
    message = str(error.value)
    assert len(message) < 400 and "..." in message
    assert "that is a data row: add the header line emotion,pixels,Usage" in message


@pytest.mark.parametrize("text, problem", [
    ("label,data\n1,2\n", "expected the header emotion,pixels,Usage"),
    ("", "is empty"),
    ("emotion,pixels,Usage\n0,1 2,Training,extra\n", "not a valid CSV.*line 2"),
])
def test_unreadable_csv_files_give_a_clear_error(tmp_path, text, problem):
    source = tmp_path / "fer2013.csv"
    source.write_text(text)
    with pytest.raises(UserError, match=problem):
        load_fer2013(source)


def test_archives_are_refused_with_advice(tmp_path):
    archive = tmp_path / "fer2013.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(UserError, match="archive: extract it"):
        load_fer2013(archive)


# -- the cache -------------------------------------------------------------------------------
def fail_if_parsed(*args, **kwargs):
    raise AssertionError("the source was parsed although a valid cache exists")


def small_csv(tmp_path, labels=(0, 1, 2), name="fer.csv"):
    rows = kaggle_rows(random_images(len(labels)), list(labels), ["Training"] * len(labels))
    return write_csv(tmp_path / name, rows)


def test_second_load_comes_from_the_cache_next_to_the_source(tmp_path, monkeypatch):
    source = small_csv(tmp_path)
    first = load_fer2013(source)
    assert not first.from_cache
    assert (tmp_path / "fer.csv.cache.npz").is_file()

    monkeypatch.setattr(data.load, "read_fer_csv", fail_if_parsed)
    second = load_fer2013(source)
    assert second.from_cache
    for split in SPLITS:
        np.testing.assert_array_equal(second.split(split)[0], first.split(split)[0])
        np.testing.assert_array_equal(second.split(split)[1], first.split(split)[1])


def test_changing_the_source_invalidates_the_cache(tmp_path):
    source = small_csv(tmp_path, labels=(0, 1, 2))
    load_fer2013(source)
    small_csv(tmp_path, labels=(5, 5, 5))  # same size, new content
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reloaded = load_fer2013(source)
    assert not reloaded.from_cache and reloaded.split("Training")[1].tolist() == [5, 5, 5]
    assert load_fer2013(source).from_cache

    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))  # a touch is enough
    assert not load_fer2013(source).from_cache


def test_read_only_source_folder_uses_the_cache_dir(tmp_path, monkeypatch):
    source = small_csv(tmp_path)
    monkeypatch.setattr(data.cache, "_is_writable_dir", lambda folder: False)
    load_fer2013(source)
    assert not (tmp_path / "fer.csv.cache.npz").exists()
    cached = list((tmp_path / "fallback-cache").glob("fer.csv-*.cache.npz"))
    assert len(cached) == 1
    assert load_fer2013(source).from_cache
    assert not list((tmp_path / "fallback-cache").glob("*.tmp"))  # atomic write left no litter


def test_bad_rows_are_cached_and_a_strict_load_still_fails(tmp_path, monkeypatch):
    rows = kaggle_rows(random_images(3), [0, 1, 2], ["Training"] * 3)
    rows[1] = (0, WRONG_COUNT, "Training")
    source = write_csv(tmp_path / "fer.csv", rows)
    assert len(load_fer2013(source, skip_bad_rows=True).skipped_rows) == 1

    monkeypatch.setattr(data.load, "read_fer_csv", fail_if_parsed)
    with pytest.raises(UserError, match=r"row 2 \(line 3.*has 2303 pixel values"):
        load_fer2013(source)
    again = load_fer2013(source, skip_bad_rows=True)
    assert again.from_cache and again.skipped_rows == [(2, "has 2303 pixel values, expected 2304")]


def test_cache_false_neither_reads_nor_writes(tmp_path):
    source = small_csv(tmp_path)
    assert not load_fer2013(source, cache=False).from_cache
    assert not (tmp_path / "fer.csv.cache.npz").exists()


def test_a_damaged_cache_is_rebuilt(tmp_path, capsys):
    source = small_csv(tmp_path)
    load_fer2013(source)
    (tmp_path / "fer.csv.cache.npz").write_bytes(b"garbage")
    reloaded = load_fer2013(source)
    assert not reloaded.from_cache and len(reloaded.split("Training")[1]) == 3
    assert "ignoring unreadable cache" in capsys.readouterr().err
    assert load_fer2013(source).from_cache


def test_image_folder_cache_notices_a_new_file(tmp_path):
    root = tmp_path / "faces"
    write_image_folder(root, {"train/happy": 2, "test/happy": 1})
    load_fer2013(root)
    assert load_fer2013(root).from_cache
    cv2.imwrite(str(root / "test" / "happy" / "new.png"), random_images(1, seed=5)[0])
    reloaded = load_fer2013(root)
    assert not reloaded.from_cache and len(reloaded.split("PrivateTest")[1]) == 2


# -- .npz ------------------------------------------------------------------------------------
def test_save_npz_round_trip(tmp_path):
    images = random_images(5)
    source = write_csv(tmp_path / "fer.csv", kaggle_rows(
        images, [0, 1, 2, 3, 4], ["Training", "PublicTest", "PrivateTest", "Training", "Training"]))
    original = load_fer2013(source)
    copy = load_fer2013(save_npz(original, tmp_path / "fer2013.npz"))
    assert copy.layout == "npz"
    for split in SPLITS:
        np.testing.assert_array_equal(copy.split(split)[0], original.split(split)[0])
        np.testing.assert_array_equal(copy.split(split)[1], original.split(split)[1])


@pytest.mark.parametrize("images, labels, message", [
    (np.full((4, 48, 48), 0.5, np.float32), np.arange(4), "floats in \\[0, 1\\]"),
    (np.where(np.arange(4 * 48 * 48).reshape(4, 48, 48) == 5000, np.nan, 100.0),
     np.arange(4), "NaN or infinite pixels \\(first in image 2\\)"),
    (np.full((4, 48, 48), 100.5), np.arange(4), "fractional gray levels"),
    (np.full((4, 48, 48), 300, np.int32), np.arange(4), "must lie in 0..255"),
    (np.zeros((4, 48, 48), np.uint8), np.array([0, 1.5, 2, 3]), "non-integer"),
    (np.zeros((4, 48, 48), np.uint8), np.array([0, 1, 2, 9]), "must lie in 0..6"),
    (np.zeros((4, 48, 48), np.uint8), np.array(["a", "b", "c", "d"]), "dtype <U1"),
])
def test_npz_arrays_are_checked_like_csv_rows(tmp_path, images, labels, message):
    np.savez(tmp_path / "bad.npz", images=images, labels=labels)
    with pytest.raises(UserError, match=message) as info:
        load_fer2013(tmp_path / "bad.npz")
    assert "'images'" in str(info.value) or "'labels'" in str(info.value)  # names the array


def test_npz_without_the_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", pictures=np.zeros(3))
    with pytest.raises(UserError, match="needs 'images' and 'labels'"):
        load_fer2013(tmp_path / "x.npz")


# -- FER+ ------------------------------------------------------------------------------------
FERPLUS_HEADER = ("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
                  "contempt,unknown,NF")


def write_ferplus(path, rows):
    path.write_text(FERPLUS_HEADER + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_ferplus_majority_labels_replace_the_originals(tmp_path):
    n = 8
    images = random_images(n)
    source = write_csv(tmp_path / "fer.csv", kaggle_rows(images, [0] * n, ["Training"] * n))
    ferplus = write_ferplus(tmp_path / "fer2013new.csv", [
        # Usage, name, neutral happiness surprise sadness anger disgust fear contempt unknown NF
        ("Training", "a.png", 6, 2, 0, 1, 1, 0, 0, 0, 0, 0),  # neutral -> 6
        ("Training", "b.png", 0, 9, 1, 0, 0, 0, 0, 0, 0, 0),  # happiness -> 3
        ("Training", "c.png", 0, 0, 0, 0, 1, 1, 7, 1, 0, 0),  # fear -> 2
        ("Training", "d.png", 1, 0, 0, 0, 0, 0, 0, 8, 1, 0),  # contempt: dropped
        ("Training", "e.png", 4, 4, 0, 0, 0, 0, 0, 0, 2, 0),  # tie, no majority: dropped
        ("Training", "f.png", 0, 0, 0, 0, 0, 0, 0, 0, 3, 7),  # NF wins: dropped
        ("Training", "", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10),      # blank name, not a face: dropped
        ("Training", "h.png", 0, 0, 1, 2, 5, 1, 0, 0, 1, 0),  # anger -> 0
    ])
    dataset = load_fer2013(source, ferplus=ferplus)
    x, y = dataset.split("Training")
    assert y.tolist() == [6, 3, 2, 0]
    np.testing.assert_array_equal(x[:, 0], images[[0, 1, 2, 7]])
    assert dataset.ferplus_dropped == 4

    # The mapping column by column: neutral..fear -> FER2013 classes 6, 3, 5, 4, 0, 1, 2
    rows = []
    for column in range(7):
        votes = [0] * 10
        votes[column] = 5
        rows.append(("Training", f"{column}.png", *votes))
    labels, _ = data.ferplus_labels(write_ferplus(tmp_path / "one_each.csv", rows))
    assert labels.tolist() == [6, 3, 5, 4, 0, 1, 2]


def test_ferplus_votes_drop_contempt_unknown_and_nf_and_keep_ties(tmp_path):
    ferplus = write_ferplus(tmp_path / "fer2013new.csv", [
        # Usage, name, neutral happiness surprise sadness anger disgust fear contempt unknown NF
        ("Training", "a.png", 6, 2, 0, 1, 1, 0, 0, 0, 0, 0),  # 0.6 neutral, 0.2 happy, ...
        ("Training", "b.png", 4, 4, 0, 0, 0, 0, 0, 0, 2, 0),  # tie kept, unknown dropped
        ("Training", "c.png", 1, 0, 0, 0, 0, 0, 0, 8, 1, 0),  # contempt wins: neutral alone
        ("Training", "d.png", 0, 0, 0, 0, 0, 0, 0, 2, 3, 5),  # no vote left: all zeros
        ("Training", "", 3, 0, 0, 0, 0, 0, 0, 0, 0, 7),       # blank name, not a face: zeros
        ("PublicTest", "f.png", 0, 0, 1, 2, 5, 1, 0, 0, 1, 0),  # anger 5/9
    ])
    votes, usage = data.ferplus_votes(ferplus)
    assert votes.dtype == np.float32 and votes.shape == (6, 7)
    # FER2013 class order: angry disgust fear happy sad surprise neutral
    expected = np.array([[0.1, 0, 0, 0.2, 0.1, 0, 0.6],
                         [0, 0, 0, 0.5, 0, 0, 0.5],
                         [0, 0, 0, 0, 0, 0, 1],
                         [0] * 7,
                         [0] * 7,
                         [5 / 9, 1 / 9, 0, 0, 2 / 9, 1 / 9, 0]])
    np.testing.assert_allclose(votes, expected, rtol=1e-6)
    assert usage.tolist() == [0, 0, 0, 0, 0, 1]

    # Loaded for training: Training keeps every row with a vote (the tie and the contempt
    # row too), PublicTest only the rows with a majority; labels are the majority, else the
    # distribution's first largest class.
    images = random_images(6)
    usage_names = ["Training"] * 5 + ["PublicTest"]
    source = write_csv(tmp_path / "fer.csv", kaggle_rows(images, [1] * 6, usage_names))
    dataset = load_fer2013(source, ferplus=ferplus, ferplus_targets="votes")
    x, y = dataset.split("Training")
    assert y.tolist() == [6, 3, 6]
    np.testing.assert_array_equal(x[:, 0], images[[0, 1, 2]])
    np.testing.assert_allclose(dataset.votes["Training"], expected[:3], rtol=1e-6)
    assert dataset.split("PublicTest")[1].tolist() == [0]
    assert dataset.ferplus_dropped == 2
    majority = load_fer2013(source, ferplus=ferplus)
    assert majority.split("Training")[1].tolist() == [6] and majority.votes == {}


def test_ferplus_file_must_line_up_with_the_csv(tmp_path):
    source = write_csv(tmp_path / "fer.csv", kaggle_rows(random_images(2), [0, 0],
                                                         ["Training", "PublicTest"]))
    votes = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    short = write_ferplus(tmp_path / "short.csv", [("Training", "a.png", *votes)])
    with pytest.raises(UserError, match="has 1 rows but fer.csv has 2"):
        load_fer2013(source, ferplus=short)
    swapped = write_ferplus(tmp_path / "swapped.csv", [("PublicTest", "a.png", *votes),
                                                       ("Training", "b.png", *votes)])
    with pytest.raises(UserError, match="does not line up.*row 1"):
        load_fer2013(source, ferplus=swapped)
    with pytest.raises(UserError, match="FER\\+ labels not found"):
        load_fer2013(source, ferplus=tmp_path / "missing.csv")


# -- finding the data ----------------------------------------------------------------------
def test_find_dataset_order_argument_then_environment_then_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data.dataset, "DEFAULT_DATA_DIRS", (data.dataset.Path("data"),))
    with pytest.raises(UserError) as error:
        find_dataset()
    for advice in ("data/fer2013/fer2013.csv", "--data", "EMOTION_DATA"):
        assert advice in str(error.value)

    (tmp_path / "data" / "fer2013").mkdir(parents=True)
    in_data = small_csv(tmp_path / "data" / "fer2013", name="fer2013.csv.gz")
    assert find_dataset() == in_data.resolve()

    elsewhere = small_csv(tmp_path, name="mine.csv")
    monkeypatch.setenv("EMOTION_DATA", str(tmp_path))  # a folder: looked into
    with pytest.raises(UserError, match="no FER2013 data in .* \\(from EMOTION_DATA\\)"):
        find_dataset()
    monkeypatch.setenv("EMOTION_DATA", str(elsewhere))
    assert find_dataset() == elsewhere
    assert find_dataset(tmp_path / "data") == in_data  # the argument beats the environment
    with pytest.raises(UserError, match="--data path .*nope.csv does not exist"):
        find_dataset(tmp_path / "nope.csv")


# -- class statistics --------------------------------------------------------------------------
def test_class_counts_and_weights():
    labels = np.array([0, 0, 0, 3, 3, 6])
    assert class_counts(labels).tolist() == [3, 0, 0, 2, 0, 0, 1]
    weights = class_weights(labels)
    assert weights.dtype == np.float32
    present = weights[[0, 3, 6]]
    np.testing.assert_allclose(present.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(present * [3, 2, 1], present[0] * 3)  # inverse frequency
    assert weights[[1, 2, 4, 5]].tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(class_weights(np.arange(7)), np.ones(7))
    with pytest.raises(ValueError):
        class_counts([7])


# -- the real data set -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not FER2013_CSV.exists(), reason=f"FER2013 not found at {FER2013_CSV}")
def test_real_fer2013_splits_and_histograms(monkeypatch):
    # The default cache folder: a full parse takes seconds, later runs reuse it.
    monkeypatch.delenv("EMOTION_CACHE")
    dataset = load_fer2013(FER2013_CSV)
    expected = {  # from the data set's README (angry, disgust, fear, happy, sad, surprise, neutral)
        "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
        "PublicTest": [467, 56, 496, 895, 653, 415, 607],
        "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
    }
    for split, histogram in expected.items():
        x, y = dataset.split(split)
        assert class_counts(y).tolist() == histogram
        assert x.shape == (sum(histogram), 1, 48, 48) and x.dtype == np.float32
    x, y = dataset.split("Training")
    assert x[0, 0, 0, :5].tolist() == [70, 80, 82, 72, 58]
    assert y[:10].tolist() == [0, 0, 2, 4, 6, 2, 4, 3, 3, 2]
    assert 0 <= x.min() and x.max() <= 255

    if FERPLUS_CSV.exists():  # the real FER+ file lines up row by row
        relabelled = load_fer2013(FER2013_CSV, ferplus=FERPLUS_CSV)
        total = sum(len(relabelled.split(s)[1]) for s in SPLITS)
        assert total + relabelled.ferplus_dropped == 35887
