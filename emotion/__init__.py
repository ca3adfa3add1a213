"""emotion: real-time face emotion recognition on the nnlite CNN engine.

The app layer stays thin: it wires FER2013 data, preprocessing, models, face detection,
tracking and display together. All maths lives in `nnlite`.

From Python, one call each (the CLI's `predict --json` and `video --csv` give the same):

    import emotion
    faces = emotion.analyze("photo.jpg")        # a list of face records
    rows = emotion.analyze_video("clip.mp4")    # a pandas DataFrame, a row per face per frame

This module imports nothing when it is imported (the functions import what they need): a
program that only wants one room, e.g. emotion.face, does not pay for nnlite, OpenCV or pandas.
"""

__version__ = "0.1.0"


def analyze(image, weights=None, backend=None, rotations=False) -> list:
    """The faces in one image: a list of records, as `emotion predict --json` prints them
    ({"box", "emotion", "probabilities", "intensity", "pose", "parts"} each, numbered left
    to right).

    image: a path, or an image array (gray, BGR or BGRA, as OpenCV reads it). weights and
    backend are the CLI's --weights and --backend (None: the shipped 'default' weights, and
    $NNLITE_BACKEND or the fastest CPU backend); rotations=True is --rotations. A missing
    file or unknown weights raise emotion.errors.UserError, whose message says what to do.
    """
    import os

    from emotion.io.images import read_image
    from emotion.io.rows import image_faces
    from emotion.video import pipeline

    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    classifier = pipeline.load_classifier(weights, backend)
    landmarker = pipeline.load_landmarker(classifier, backend)
    detector, parts = pipeline.photo_detectors()
    with pipeline.one_blas_thread():
        return image_faces(pipeline.analyze_image(classifier, image, detector, parts,
                                                  rotations=rotations, landmarker=landmarker))


def analyze_video(path, weights=None, backend=None, detect_every=None, classify_every=None,
                  max_frames=None):
    """A video's faces as a pandas DataFrame: one row per face per frame, the columns and
    values of `emotion video --csv` (emotion.io.rows.COLUMNS; NaN where a part or an angle was
    not found).

    weights (None: the real-time 'mobile_face' weights, as `emotion video`), backend,
    detect_every and classify_every are the CLI's options of the same names; max_frames stops
    after that many frames.
    """
    import pandas as pd

    from emotion.io.rows import COLUMNS, TEXT_COLUMNS, face_rows, flat_row
    from emotion.video import pipeline
    from emotion.video.loop import FrameLoop

    loop = FrameLoop(path, weights or pipeline.VIDEO_WEIGHTS, backend, detect_every=detect_every,
                     classify_every=classify_every, max_frames=max_frames)
    with pipeline.one_blas_thread(), loop:
        rows = [flat_row(row) for frame, results in loop
                for row in face_rows(frame.index, frame.timestamp, results)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    # As the CSV reads back: numbers in every column but the words, NaN for what is missing.
    numeric = [c for c in COLUMNS if c not in TEXT_COLUMNS]
    table[numeric] = table[numeric].apply(pd.to_numeric)
    return table
