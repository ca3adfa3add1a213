"""What the CNN sees and why it decides, as one figure (`emotion explain IMAGE`, the page's
"Inside the network" panel).

    the face found (or the image centre) -> each preprocessing step -> the feature maps of
    every conv layer -> the first layer's filters -> saliency and Grad-CAM -> probabilities

The face goes through exactly what `emotion predict` does (detect, align by the eyes, crop,
`face_to_input`), so the figure explains the real prediction. The face panel also shows the
parts found (eyes, eyebrows, mouth) and the head pose (emotion.face.pose), as predict
reports them. The network runs layer by layer over `model.layers`; saliency and Grad-CAM
are plain backward passes of nnlite's own autograd (see `nnlite.viz.saliency_and_grad_cam`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import nnlite
from nnlite import layers as L
from nnlite.viz import saliency_and_grad_cam

from emotion.errors import UserError
from emotion.io.outputs import (check_output_file, check_outputs_spare_inputs, refuse_existing,
                                write_atomically)
from emotion.labels import EMOTIONS

MAPS_PER_LAYER = 8  # feature maps shown per conv layer (the first ones)
FILTERS_SHOWN = 16  # first-layer filters shown


@dataclass
class Explanation:
    """Everything the figure shows, as NumPy arrays."""

    image: np.ndarray            # the input image, 8-bit BGR
    box: tuple | None            # the face (x, y, w, h), None when no face was found
    faces_found: int
    steps: list                  # [(name, 48x48 image)] from preprocess_steps
    conv_maps: list              # [(title, (C, h, w) activations)] for every conv layer
    filters: np.ndarray          # first conv layer's weights (OC, C, KH, KW)
    saliency: np.ndarray         # (48, 48)
    grad_cam: np.ndarray         # (h, w) at the last conv layer
    probabilities: np.ndarray    # (7,)
    class_index: int             # the class whose score is explained
    model_name: str
    model_labels: str = "fer2013"  # the labels the model learned (EmotionClassifier.labels)
    parts: object = None         # detector.FaceParts of the face (None without a face)
    pose: object = None          # pose.HeadPose of the face (None without a face)
    landmarks: object = None     # (68, 2) image px from the landmark model (None without)


def locate_face(gray):
    """(crop, box, number of faces): the largest face, aligned by its eyes like `predict`;
    without a face, the centre square of the image and box None."""
    crop, box, faces, _, _, _ = locate_face_and_parts(gray)
    return crop, box, faces


def locate_face_and_parts(gray, landmarker=None):
    """locate_face's (crop, box, number of faces), and the face's parts, head pose and
    landmarks (None without a face), found as `predict` finds them: with a landmark model
    (pipeline.load_landmarker) the crop levelled by its eyes, the parts and pose from its
    points; without one, the Haar parts and the geometric pose (landmarks None)."""
    from emotion.face.detector import align_face
    from emotion.face.landmarks import locate
    from emotion.video.pipeline import photo_detectors, profile_detector
    from emotion.face.pose import estimate_pose

    detector, parts_detector = photo_detectors()
    boxes = detector.detect(gray)
    if not boxes:
        h, w = gray.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return gray[top:top + side, left:left + side], None, 0, None, None, None
    box = max(boxes, key=lambda b: b[2] * b[3])
    if landmarker is not None:
        (face,), (crop,), _ = locate(landmarker.predict_geometry, gray, [box])
        return crop.image, box, len(boxes), face.parts(box[3]), face.pose(), face.points
    parts = parts_detector.find(gray, box)
    pose = estimate_pose(gray, box, parts.eyes, parts.mouth, profile_detector())
    return align_face(gray, box, parts.eyes), box, len(boxes), parts, pose, None


def conv_blocks(model):
    """[(conv number, index of the layer whose output is shown)] for every Conv2d layer:
    the ReLU that follows it when there is one (what the next layer actually receives),
    else the convolution itself."""
    layers = model.layers
    blocks = []
    for i, layer in enumerate(layers):
        if isinstance(layer, L.Conv2d):
            shown = i
            for j in range(i + 1, len(layers)):
                if isinstance(layers[j], (L.Conv2d, L.MaxPool2d, L.Flatten)):
                    break
                if isinstance(layers[j], L.ReLU):
                    shown = j
                    break
            blocks.append((len(blocks) + 1, shown))
    if not blocks:
        raise UserError("explain needs a convolutional model (a Sequential with Conv2d layers)")
    return blocks


def explain(image, classifier, emotion: str | None = None, landmarker=None) -> Explanation:
    """Run the classifier on the face in `image` (any depth/channels) and collect the
    figure's data; with a landmark model (pipeline.load_landmarker), the face's 68 points
    and pose come from it and its crop is levelled by them, as `predict` does."""
    from emotion.cnn.preprocess import face_to_input, preprocess_steps, resize_face
    from emotion.io.images import to_bgr8, to_gray8

    model = classifier.model
    if not isinstance(model, L.Sequential):
        raise UserError(f"explain runs models layer by layer and needs a Sequential, "
                        f"got {type(model).__name__}")
    gray = to_gray8(image)
    crop, box, faces, parts, pose, points = locate_face_and_parts(gray, landmarker)
    steps = preprocess_steps(resize_face(crop)[None], classifier.preprocess_config)
    x = face_to_input(crop, classifier.preprocess_config)[None]  # (1, 1, 48, 48)
    x = nnlite.Tensor(nnlite.to_device(x, classifier.device))

    blocks = conv_blocks(model)
    shown = {index: number for number, index in blocks}
    conv_maps = []
    with nnlite.no_grad():
        logits, a = None, x
        for i, layer in enumerate(model.layers):
            a = layer(a)
            if i in shown:
                maps = nnlite.to_numpy(a)[0]
                what = "ReLU" if isinstance(layer, L.ReLU) else "output"
                conv_maps.append((f"conv {shown[i]} {what}: {min(MAPS_PER_LAYER, len(maps))} of "
                                  f"{len(maps)} maps, {maps.shape[1]}x{maps.shape[2]}", maps))
        logits = nnlite.to_numpy(a)[0]
    class_index = EMOTIONS.index(emotion) if emotion else int(logits.argmax())

    _, saliency, cam, _ = saliency_and_grad_cam(model, x, class_index, split=blocks[-1][1])
    shifted = np.exp(logits - logits.max())
    first_conv = next(layer for layer in model.layers if isinstance(layer, L.Conv2d))
    return Explanation(
        image=to_bgr8(image), box=box, faces_found=faces, steps=steps, conv_maps=conv_maps,
        filters=nnlite.to_numpy(first_conv.W), saliency=saliency, grad_cam=cam,
        probabilities=shifted / shifted.sum(), class_index=class_index,
        model_name=classifier.model_name,
        model_labels=getattr(classifier, "labels", "fer2013"), parts=parts, pose=pose, landmarks=points)


# -- the figure ---------------------------------------------------------------------------------
def montage(maps, columns, pad=1, symmetric=False, shared=False):
    """Tile (K, h, w) maps into one image, each scaled to its own range (to [0, 1], or to
    [-1, 1] around 0 when `symmetric`, so the sign of a weight stays visible), or, when
    `shared`, left in their own units so that one colour scale reads every tile. NaN between
    tiles draws as background."""
    k, h, w = maps.shape
    rows = -(-k // columns)
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan, np.float32)
    for n, m in enumerate(maps.astype(np.float32)):
        if shared:
            pass
        elif symmetric:
            m = m / max(float(np.abs(m).max()), 1e-12)
        else:
            low, high = float(m.min()), float(m.max())
            m = (m - low) / (high - low) if high > low else np.zeros_like(m)
        r, c = divmod(n, columns)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = m
    return out


def step_changes(steps):
    """[(title, image)] of what each preprocessing step did, for the figure's second row: the
    difference from the step before on the 0..255 scale (gamma and a light blur change a
    pixel by a few gray levels, invisible side by side), then the network's input itself,
    whose units are standard deviations of the face."""
    changes = [(f"{k + 1} minus {k}: {name.split()[0]}'s change", step - steps[k - 1][1])
               for k, (name, step) in enumerate(steps[:-1]) if k > 0]
    return changes + [(f"{len(steps)}: the input, in std units", steps[-1][1])]


def build_figure(ex: Explanation):
    """The matplotlib Figure and the title of every panel, in reading order."""
    import cv2
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows = [[("face", None)] + [(name, None) for name, _ in ex.steps]]
    changes = step_changes(ex.steps)
    rows.append(changes)
    conv_rows = [ex.conv_maps[i:i + 4] for i in range(0, len(ex.conv_maps), 4)]
    rows += conv_rows
    rows.append([("filters", None), ("saliency", None), ("grad_cam", None), ("probs", None)])

    heights = [1.0, 1.0] + [0.6] * len(conv_rows) + [1.0]  # a 2x4 montage is twice as wide as tall
    fig = Figure(figsize=(16, 3.6 * sum(heights)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows), 1, height_ratios=heights)
    # Gaps between montage tiles are NaN: draw them grey, apart from every colour a map uses.
    viridis = colormaps["viridis"].with_extremes(bad="0.85")
    bwr = colormaps["bwr"].with_extremes(bad="0.6")
    titles = []

    def colorbar(ax, shown, label=None):
        # in a narrow column of the panel's own cell (see panel), so the layout makes room
        cell = ax.get_subplotspec().get_gridspec()
        fig.colorbar(shown, cax=fig.add_subplot(cell[1]), label=label)

    def panel(row, column, ncols, title, scale=False):
        cell = grid[row].subgridspec(1, ncols)[column]
        if scale:  # the image and its colour bar side by side in one cell
            cell = cell.subgridspec(1, 2, width_ratios=[14, 1])[0]
        ax = fig.add_subplot(cell)
        ax.set_title(title, fontsize=10)
        titles.append(title)
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    # Row 1: where the face is, and each preprocessing step.
    ncols = len(rows[0])
    ax = panel(0, 0, ncols, "detected face" if ex.box else "no face found: image centre")
    ax.imshow(cv2.cvtColor(ex.image, cv2.COLOR_BGR2RGB))
    h, w = ex.image.shape[:2]
    x0, y0, bw, bh = ex.box or ((w - min(h, w)) // 2, (h - min(h, w)) // 2, min(h, w), min(h, w))
    ax.add_patch(Rectangle((x0, y0), bw, bh, fill=False, lw=2,
                           ec="lime" if ex.box else "orange", ls="-" if ex.box else "--"))
    if ex.parts is not None:  # the parts predict reports, and the pose under the panel
        for boxes, color in ((ex.parts.eyes, "cyan"), (ex.parts.eyebrows, "yellow"),
                             ([ex.parts.mouth], "red")):
            for b in boxes:
                if b is not None:
                    ax.add_patch(Rectangle(b[:2], b[2], b[3], fill=False, lw=1, ec=color))
        ax.set_xlabel(pose_text(ex.pose), fontsize=9)
    if ex.landmarks is not None:  # the 68 points, from the landmark model
        ax.scatter(ex.landmarks[:, 0], ex.landmarks[:, 1], s=2, c="yellow", linewidths=0)
    for k, (name, step) in enumerate(ex.steps):
        ax = panel(0, k + 1, ncols, f"{k + 1}. {name}")
        normalized = k == len(ex.steps) - 1
        ax.imshow(step, cmap="gray", **({} if normalized else {"vmin": 0, "vmax": 255}))

    # Row 2: what each step changed, with a colour scale in gray levels (red brighter,
    # blue darker), and the input itself in its own units.
    for k, (title, change) in enumerate(changes):
        ax = panel(1, k, ncols, title, scale=True)
        if k < len(changes) - 1:
            limit = max(float(np.abs(change).max()), 1e-6)
            shown = ax.imshow(change, cmap="bwr", vmin=-limit, vmax=limit)
            colorbar(ax, shown, "gray levels")
        else:
            shown = ax.imshow(change, cmap="gray")
            colorbar(ax, shown, "std of the face")

    # Feature maps: what each conv layer passes on, on one colour scale per layer (the
    # activation values after the ReLU), so a weak map looks weak beside a strong one.
    for r, row in enumerate(conv_rows, start=2):
        for k, (title, maps) in enumerate(row):
            ax = panel(r, k, 4, title, scale=True)
            shown_maps = maps[:MAPS_PER_LAYER]
            top = max(float(np.nanmax(shown_maps)), 1e-6)
            low = min(float(np.nanmin(shown_maps)), 0.0)
            shown = ax.imshow(montage(shown_maps, columns=4, shared=True), cmap=viridis,
                              vmin=low, vmax=top)
            colorbar(ax, shown)

    # Last row: first-layer filters, the two gradient maps and the answer.
    r, face = len(rows) - 1, ex.steps[0][1]
    filters = ex.filters[:FILTERS_SHOWN, 0]
    ax = panel(r, 0, 4, f"conv 1 filters: {len(filters)} of {len(ex.filters)} "
                        f"{filters.shape[1]}x{filters.shape[2]} (red +, blue -)")
    ax.imshow(montage(filters, columns=4, symmetric=True), cmap=bwr, vmin=-1, vmax=1)
    name = EMOTIONS[ex.class_index]
    ax = panel(r, 1, 4, f"saliency |d score({name}) / d input|")
    ax.imshow(face, cmap="gray", vmin=0, vmax=255)
    ax.imshow(ex.saliency, cmap="hot", alpha=0.6)
    ax = panel(r, 2, 4, f"Grad-CAM for {name} (last conv, {ex.grad_cam.shape[0]}x"
                        f"{ex.grad_cam.shape[1]})")
    cam = cv2.resize(ex.grad_cam.astype(np.float32), face.shape[::-1],
                     interpolation=cv2.INTER_LINEAR)
    ax.imshow(face, cmap="gray", vmin=0, vmax=255)
    ax.imshow(cam, cmap="jet", alpha=0.45)
    ax = fig.add_subplot(grid[r].subgridspec(1, 4)[3])
    title = "probabilities (softmax of the logits)"
    ax.set_title(title, fontsize=10)
    titles.append(title)
    colors = ["tab:orange" if i == ex.class_index else "tab:blue" for i in range(len(EMOTIONS))]
    ax.barh(EMOTIONS, ex.probabilities, color=colors)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)

    best = int(np.argmax(ex.probabilities))
    where = (f"largest of {ex.faces_found} faces" if ex.faces_found > 1 else "the face found"
             if ex.box else "NO FACE FOUND: the centre crop of the whole image is used")
    fig.suptitle(f"emotion explain: {EMOTIONS[best]} ({ex.probabilities[best]:.2f}), "
                 f"model {ex.model_name} ({ex.model_labels} labels), {where}", fontsize=13)
    return fig, titles


def pose_text(pose) -> str:
    """'yaw +12 pitch -3 roll +4 (degrees)', '?' for an unknown angle (emotion.face.pose)."""
    return " ".join(f"{name} {'?' if v is None else f'{v:+.0f}'}" for name, v in
                    (("yaw", pose.yaw), ("pitch", pose.pitch), ("roll", pose.roll))) + " (deg)"


def figure_path(out) -> Path:
    """Where the figure goes: `out`, with .png added when it has no extension (as matplotlib
    does when it saves)."""
    out = Path(out)
    return out if out.suffix else out.with_name(out.name + ".png")


def explain_image(path, out, weights=None, emotion=None, backend=None, overwrite=True):
    """Read `path`, explain it, write the figure to `out` (an existing one only with
    `overwrite`); returns (Explanation, titles)."""
    from emotion.cnn.classifier import EmotionClassifier
    from emotion.io.images import read_image

    from emotion.cnn.classifier import resolve_weights

    out = check_output_file(figure_path(out), "--out")  # before the work, not after it
    check_outputs_spare_inputs({"--out": out}, {"the image": path,
                                                "the weight file": resolve_weights(weights)})
    refuse_existing({"--out": out}, overwrite)
    image = read_image(path)  # UserError for a missing or unreadable file
    from emotion.video.pipeline import load_landmarker

    classifier = EmotionClassifier.load(weights, backend=backend)
    ex = explain(image, classifier, emotion, landmarker=load_landmarker(classifier, backend))
    fig, titles = build_figure(ex)
    figure = io.BytesIO()  # drawn whole first: a full disk must not leave half a PNG
    try:
        fig.savefig(figure, dpi=80, format="png")
    except ValueError as err:
        raise UserError(f"cannot write {out}: {err}") from None
    write_atomically(out, figure.getvalue())
    return ex, titles
