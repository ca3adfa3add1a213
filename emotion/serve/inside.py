"""The "Inside the network" panel: `emotion explain`'s Explanation as small PNGs for a page.

emotion.cnn.explain.explain does the work (the face found and aligned as `predict` does, each
preprocessing step, every conv layer's feature maps, saliency and Grad-CAM from nnlite's
own backward pass); this module only turns its arrays into images a browser shows:

    {"model", "box", "faces_found", "emotion", "probabilities",
     "steps": [{"name", "png"}], "conv_maps": [{"title", "png"}],
     "saliency": png, "grad_cam": png}      png = base64 of a PNG file

Each map is scaled to its own range, as the explain figure does, and enlarged with nearest
neighbour so that a 6x6 map shows its pixels rather than a blur.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from emotion.cnn.explain import MAPS_PER_LAYER, explain, montage
from emotion.labels import EMOTIONS

FACE_PX = 144  # a 48x48 face shown three times as large


def png(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image)
    return base64.b64encode(data.tobytes()).decode("ascii")


def colorize(values: np.ndarray, colormap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """A float map (NaN = background) as 8-bit BGR, its range stretched to 0..255."""
    finite = np.isfinite(values)
    low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0, 1)
    scaled = np.zeros(values.shape, np.uint8)
    if high > low:
        scaled[finite] = ((values[finite] - low) / (high - low) * 255).astype(np.uint8)
    image = cv2.applyColorMap(scaled, colormap)
    image[~finite] = 215  # light grey between the tiles of a montage
    return image


def enlarge(image: np.ndarray, height: int) -> np.ndarray:
    scale = max(1, height // image.shape[0])
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def overlay(face: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A heat map over the gray 48x48 face, both at FACE_PX."""
    face = cv2.cvtColor(np.clip(face, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    face = cv2.resize(face, (FACE_PX, FACE_PX), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(heat.astype(np.float32), (FACE_PX, FACE_PX), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(face, 0.45, colorize(heat, cv2.COLORMAP_JET), 0.55, 0)


def explain_json(image: np.ndarray, classifier, landmarker=None) -> dict:
    """Runs on the inference thread, holding the model's lock (forward and backward passes);
    `landmarker` (pipeline.load_landmarker) places and levels the face as predict does."""
    with classifier.lock:
        ex = explain(image, classifier.classifier, landmarker=landmarker)
    steps = []
    for i, (name, step) in enumerate(ex.steps):
        last = i == len(ex.steps) - 1  # normalized: not on the 0..255 scale
        gray = colorize(step, cv2.COLORMAP_BONE) if last else np.clip(step, 0, 255).astype(np.uint8)
        steps.append({"name": name, "png": png(enlarge(gray, FACE_PX))})
    maps = [{"title": title, "png": png(enlarge(colorize(montage(a[:MAPS_PER_LAYER], columns=4)),
                                                 FACE_PX))}
            for title, a in ex.conv_maps]
    face = ex.steps[0][1]
    best = int(np.argmax(ex.probabilities))
    return {
        "model": ex.model_name,
        "labels": ex.model_labels,
        "box": None if ex.box is None else [int(v) for v in ex.box],
        "faces_found": ex.faces_found,
        "emotion": EMOTIONS[best],
        "explained": EMOTIONS[ex.class_index],
        "probabilities": {n: round(float(p), 4) for n, p in zip(EMOTIONS, ex.probabilities)},
        "steps": steps,
        "conv_maps": maps,
        "saliency": png(overlay(face, ex.saliency)),
        "grad_cam": png(overlay(face, ex.grad_cam)),
    }
