"""`emotion export --weights W --out model.onnx`: the emotion model as an ONNX file.

The file is the network (nnlite.onnx.export) with a Softmax node appended, so its output is
the seven class probabilities, "probabilities" (N, 7), not logits. Its metadata_props carry
what another runtime needs to use it with no code from this package:

    classes        JSON list of the 7 class names, in the order of the output
    preprocessing  JSON: every step that turns a gray face crop into the input (N, 1, 48, 48)
                   and its constants, from the weight file's own config (see preprocess.py)
    model, weights the model's name and the weight file it came from

The docs (docs/app.md, "Exporting to ONNX") run such a file with onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.errors import UserError
from emotion.labels import EMOTIONS
from emotion.io.outputs import (add_overwrite_argument, check_output_file,
                                check_outputs_spare_inputs, refuse_existing)
from emotion.commands.options import add_weights_option


def add_arguments(parser) -> None:
    from nnlite.onnx import DEFAULT_OPSET

    add_weights_option(parser)
    parser.add_argument("--out", required=True, help="the ONNX file to write, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset version (default {DEFAULT_OPSET})")
    add_overwrite_argument(parser)


def run(args) -> int:
    path = export_emotion_model(args.weights, args.out, opset=args.opset,
                                overwrite=args.overwrite)
    print(f"wrote {path}: input 'input' (N, 1, 48, 48) float32 -> output 'probabilities' "
          f"(N, {len(EMOTIONS)}): {', '.join(EMOTIONS)}")
    return 0


def export_emotion_model(weights, out, opset=None, overwrite=True) -> Path:
    """Export the emotion model of `weights` (a path or a shipped name; None: the default)
    to the ONNX file `out`, with its classes and preprocessing in the metadata. An existing
    `out` is replaced only with `overwrite` (the command passes its --overwrite); the weight
    file never is."""
    from nnlite.onnx import DEFAULT_OPSET, ExportError, export

    from emotion.cnn.classifier import EmotionClassifier, resolve_weights
    from emotion.cnn.preprocess import SIZE

    out = check_output_file(out, "--out")
    weights_path = resolve_weights(weights)
    check_outputs_spare_inputs({"--out": out}, {"the weight file": weights_path})
    refuse_existing({"--out": out}, overwrite)
    classifier = EmotionClassifier.load(weights, backend="numpy")
    metadata = {
        "classes": list(EMOTIONS),
        "preprocessing": preprocessing_metadata(classifier.preprocess_config),
        "output": f"probabilities (N, {len(EMOTIONS)}): softmax of the logits, in the order "
                  "of classes",
        "model": classifier.model_name,
        "weights": weights_path.name,
        # what the classes mean in the data: FER2013's single labels or FER+'s ten annotators
        "labels": classifier.labels,
    }
    example = np.zeros((1, 1, SIZE, SIZE), np.float32)
    try:
        return export(classifier.model, example, out, metadata=metadata,
                      opset=DEFAULT_OPSET if opset is None else opset, softmax=True)
    except ExportError as err:
        raise UserError(str(err)) from None


def preprocessing_metadata(config) -> dict:
    """The preprocessing as data another runtime can follow: `config`'s fields, with the
    Gaussian kernel size resolved (config's 0 means "from sigma") and the constants that are
    in the code rather than the config (input size, the std floor, the resampling)."""
    from emotion.cnn.preprocess import SIZE, STD_FLOOR, gaussian_kernel

    blur = config.gaussian_sigma > 0
    return {
        "input_size": [SIZE, SIZE],
        "steps": [
            "gray: a face crop as 8-bit gray (from BGR: cv2.COLOR_BGR2GRAY)",
            f"resize to {SIZE}x{SIZE}: cv2.INTER_AREA when either side shrinks, "
            "else cv2.INTER_LINEAR",
            "gamma: x = (gray / 255) ** (1 / gamma), float32 in [0, 1]",
            "blur (if gaussian_sigma > 0): separable Gaussian of gaussian_ksize taps, "
            "borders mirrored (cv2.BORDER_REFLECT_101)",
            "equalize (if true): cv2.equalizeHist of round(x * 255), then / 255",
            "normalize: per_image: (x - mean(x)) / max(std(x), std_floor); dataset: "
            "(x - mean) / std; none: x",
            f"input: float32 (N, 1, {SIZE}, {SIZE})",
        ],
        "gamma": float(config.gamma),
        "gaussian_sigma": float(config.gaussian_sigma),
        "gaussian_ksize": len(gaussian_kernel(config.gaussian_sigma, config.gaussian_ksize))
        if blur else 0,
        "gaussian_border": "reflect_101",
        "equalize": bool(config.equalize),
        "normalize": config.normalize,
        "mean": config.mean,
        "std": config.std,
        "std_floor": STD_FLOOR,
    }
