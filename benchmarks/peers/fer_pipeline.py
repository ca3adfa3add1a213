"""fer's pipeline on a clip: FER(mtcnn=False).detect_emotions on every frame (its Haar scan,
scale 1.1, 5 neighbours, faces from 50 px, then its int8 TFLite mini-Xception on each face);
one JSON object on stdout (see benchmarks/peers/__init__.py). Runs only in fer's own venv:

    ../fervenv/bin/python benchmarks/peers/fer_pipeline.py CLIP

fer imports TensorFlow only for `tf.lite.Interpreter` when use_tflite is on (its default),
and TensorFlow and fer's other dependencies (PyTorch for MTCNN, moviepy) are gigabytes this
benchmark does not use: the venv holds `pip install --no-deps fer ai-edge-litert` with
NumPy, OpenCV, requests and Pillow, and a stand-in `tensorflow` module below hands fer
ai-edge-litert's Interpreter, the same TFLite runtime TensorFlow ships under that name.
"""

import json
import sys
import time
import types

START = time.perf_counter()

import cv2  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402


def _tensorflow_stand_in() -> None:
    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(Interpreter=Interpreter)
    keras = types.ModuleType("tensorflow.keras")
    models = types.ModuleType("tensorflow.keras.models")

    def load_model(*args, **kwargs):
        raise RuntimeError("fer's Keras model is not used here (use_tflite=True)")

    models.load_model = load_model
    tf.keras, keras.models = keras, models
    sys.modules.update({"tensorflow": tf, "tensorflow.keras": keras,
                        "tensorflow.keras.models": models})


def main(path: str) -> None:
    _tensorflow_stand_in()
    from fer.fer import FER
    from importlib.metadata import version

    detector = FER(mtcnn=False)
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise SystemExit(f"could not open {path}")
    startup = time.perf_counter() - START
    frames = []
    loop_start = time.perf_counter()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        faces = detector.detect_emotions(image)
        frames.append([[int(v) for v in face["box"]] for face in faces])
    loop = time.perf_counter() - loop_start
    capture.release()
    print(json.dumps({"system": "fer", "version": version("fer"), "frames": len(frames),
                      "startup_seconds": round(startup, 3), "loop_seconds": round(loop, 3),
                      "frames_per_second": round(len(frames) / loop, 2) if loop else None,
                      "boxes": frames}))


if __name__ == "__main__":
    main(sys.argv[1])
