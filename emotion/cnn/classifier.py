"""EmotionClassifier: weights + model + preprocessing, ready to classify face crops.

The weight file carries the model's name and the exact preprocessing config it was trained
with, so loading needs no extra flags and inference preprocesses exactly like training.
"""

import os
from importlib import resources
from pathlib import Path

import numpy as np

import nnlite
import nnlite.functional as F
from nnlite.fold import fold_batch_norm

from emotion.cnn import models
from emotion.errors import UserError
from emotion.labels import EMOTIONS


def shipped_weights_path(name: str = "default") -> Path:
    """A weight file shipped inside the package (see the README's table): "default" (the most
    accurate), "compact" (about 4x less compute per face) and "mobile_face" (the fastest,
    with landmarks, pose and presence: the real-time default), all three trained on FER+'s
    labels; "default_fer2013", "compact_fer2013" and "mobile_fer2013" learned FER2013's."""
    return Path(str(resources.files("emotion") / "weights" / f"{name}.npz"))


def shipped_names() -> list[str]:
    """The names of the weight files shipped inside the package, sorted."""
    folder = Path(str(resources.files("emotion") / "weights"))
    return sorted(p.stem for p in folder.glob("*.npz"))


def resolve_weights(weights=None) -> Path:
    """None -> the shipped default; a shipped name ("compact", "mobile_face") -> that file; else a
    path."""
    if weights is None:
        return shipped_weights_path()
    if "/" not in str(weights) and not str(weights).endswith(".npz"):
        shipped = shipped_weights_path(str(weights))
        if shipped.is_file():
            return shipped
    return Path(weights)


class EmotionClassifier:
    def __init__(self, model, preprocess_config, meta=None, device="cpu"):
        self.model = model.eval()  # as trained: what explain, export and a teacher look at
        # What predictions run: the same network with its batch norms folded into the
        # convolutions before them (nnlite.fold): equal up to float32 rounding, fewer ops.
        self.inference_model = fold_batch_norm(self.model)
        self.preprocess_config = preprocess_config
        self.meta = meta or {}
        self.device = device
        self._plans = {}  # input shape -> _PlannedModel, made on first use (numba, CPU)

    @classmethod
    def load(cls, weights=None, backend=None):
        """Load a weight file: None for the shipped default, a shipped name ("compact",
        "mobile_face"), or the path of a file written by `emotion train` (runs/NAME/best.npz)."""
        from emotion.cnn.preprocess import PreprocessConfig

        backend = choose_backend(backend)
        path = resolve_weights(weights)
        if path.is_dir():
            raise UserError(f"{path} is a folder: pass the weight file in it "
                            "(runs/NAME/best.npz from `emotion train`)")
        if not path.is_file():
            hint = ("train one with `emotion train` and pass --weights runs/NAME/best.npz"
                    if weights is None else
                    "check the path; the shipped weights are named "
                    + ", ".join(repr(n) for n in shipped_names()))
            raise UserError(f"weight file not found: {path} ({hint})")
        try:
            meta = nnlite.read_meta(path)
            if "model" not in meta or "preprocess" not in meta:
                raise UserError(f"{path} has no model name / preprocessing config: it is not an "
                                "emotion weight file (use best.npz from `emotion train`)")
            if meta["model"] not in models.MODELS:
                raise UserError(f"{path} was trained for a model named {meta['model']!r}, which "
                                f"this version does not know (it has: {', '.join(models.MODELS)})")
            model = models.build(meta["model"])
            nnlite.load(model, path)
        except nnlite.WeightFileError as err:
            raise UserError(str(err)) from None
        device = "cuda" if backend == "cuda" else "cpu"
        if device == "cuda":
            model.to("cuda")
        return cls(model, PreprocessConfig.from_dict(meta["preprocess"]), meta, device)

    @property
    def model_name(self) -> str:
        return self.meta.get("model", "?")

    @property
    def labels(self) -> str:
        """The labels the model learned: "fer2013", "ferplus-majority" or "ferplus-votes"
        (the weight file's meta, written by `emotion train`; files from before it was
        recorded, such as the shipped FER2013 weights, were trained on FER2013's)."""
        return str(self.meta.get("labels", "fer2013"))

    def predict_batch(self, images) -> np.ndarray:
        """Probabilities (N, 7) float32 for preprocessed images (N, 1, 48, 48)."""
        if len(images) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        planned = self._planned(images)
        with nnlite.no_grad():
            if planned is not None:
                logits = nnlite.Tensor(planned.forward(images))
            else:
                x = nnlite.Tensor(nnlite.to_device(np.ascontiguousarray(images, np.float32),
                                                   self.device))
                logits = self.inference_model(x)
            probs = F.softmax(logits)
        return nnlite.to_numpy(probs.data).astype(np.float32, copy=False)

    @property
    def has_geometry(self) -> bool:
        """Whether the model also gives landmarks and pose (emotion.cnn.models.FaceNet)."""
        return models.has_geometry(self.model)

    def predict_geometry(self, crops) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities (N, 7), geometry (N, 139), presence (N,)) for gray uint8 face crops
        of any size, from one pass of a model with a geometry head (emotion.face.geometry
        decodes the geometry; presence is the probability that a crop holds a well-framed
        face)."""
        from emotion.cnn.preprocess import faces_to_batch

        if not self.has_geometry:
            raise UserError(f"the {self.model_name!r} weights give no landmarks: a model with "
                            "a geometry head (mobile_face) does")
        if len(crops) == 0:
            return (np.zeros((0, len(EMOTIONS)), np.float32),
                    np.zeros((0, models.GEOMETRY_OUTPUTS), np.float32),
                    np.zeros(0, np.float32))
        return self.predict_geometry_batch(faces_to_batch(list(crops), self.preprocess_config))

    def predict_geometry_batch(self, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """predict_geometry for preprocessed images (N, 1, 48, 48)."""
        logits, geometry, presence = self._geometry_forward(images)
        with nnlite.no_grad():
            probs = F.softmax(nnlite.Tensor(logits))
        # The presence head's logit as a probability (the sigmoid, written for no overflow).
        presence = np.exp(-np.logaddexp(0, -presence)).astype(np.float32)
        return nnlite.to_numpy(probs.data).astype(np.float32, copy=False), geometry, presence

    def _geometry_forward(self, images) -> tuple:
        """The inference model's geometry_forward (logits, geometry, and whatever more its
        heads give) as float32 NumPy arrays: through the compiled plans where they run."""
        planned = self._planned(images)
        if planned is not None:
            return planned.geometry_forward(images)
        with nnlite.no_grad():
            x = nnlite.Tensor(nnlite.to_device(np.ascontiguousarray(images, np.float32),
                                               self.device))
            outputs = self.inference_model.geometry_forward(x)
        return tuple(nnlite.to_numpy(t.data).astype(np.float32, copy=False) for t in outputs)

    def _planned(self, images):
        """The inference model compiled into nnlite plans (nnlite.plan: no autograd, buffers
        reused) for these images, or None where the modules run: another backend than Numba,
        the GPU, a batch larger than PLAN_MAX_BATCH, or a model with a layer that plans do
        not know (the seed net's LRN)."""
        if (self.device != "cpu" or len(images) > PLAN_MAX_BATCH
                or nnlite.current() != "numba"):
            return None
        shape = tuple(np.shape(images)[1:])
        if shape not in self._plans:
            try:
                self._plans[shape] = _PlannedModel(self.inference_model, shape)
            except ValueError:  # (the modules give the same values, only slower)
                self._plans[shape] = None
        return self._plans[shape]

    def predict_faces(self, crops) -> np.ndarray:
        """Probabilities (N, 7) for gray uint8 face crops of any size (the training pipeline)."""
        from emotion.cnn.preprocess import faces_to_batch

        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        return self.predict_batch(faces_to_batch(list(crops), self.preprocess_config))


# Batches up to this size run through nnlite plans on the Numba backend: the faces of a frame.
# A plan keeps buffers for the largest batch it has run (in each thread); for larger batches
# (evaluate's) the per-op overhead it saves is a small part of the time, and the modules run.
PLAN_MAX_BATCH = 32


class _PlannedModel:
    """An inference model as nnlite plans: the whole network, or, for a model with heads
    (FaceNet), its trunk once and each head on the trunk's output, so that one pass of the
    trunk serves them all, as the model's geometry_forward does."""

    def __init__(self, model, input_shape):
        from nnlite.plan import Plan  # imports the Numba kernels: only on that backend

        if not models.has_geometry(model):
            self.whole = Plan(model, input_shape)
            return
        self.whole = None
        self.trunk = Plan(model.trunk(), input_shape)
        heads = [model.emotion_head(), model.geometry]
        if getattr(model, "presence", None) is not None:
            heads.append(model.presence)
        self.heads = [Plan(head, self.trunk.output_shape) for head in heads]

    def forward(self, images) -> np.ndarray:
        """The emotion logits (N, 7)."""
        if self.whole is not None:
            return self.whole(images)
        return self.heads[0](self.trunk(images))

    def geometry_forward(self, images) -> tuple:
        """(logits, geometry[, presence (N,)]) as the model's geometry_forward gives them."""
        features = self.trunk(images)
        outputs = [head(features) for head in self.heads]
        if len(outputs) == 3:
            outputs[2] = outputs[2].reshape(len(images))  # presence: one logit a face
        return tuple(outputs)


def choose_backend(name=None) -> str:
    """The requested backend, else $NNLITE_BACKEND, else the fastest CPU one that works here."""
    source = ""
    if name is None:
        name = os.environ.get("NNLITE_BACKEND", "").strip().lower()
        source = f"NNLITE_BACKEND={name}: " if name else ""  # say where the name came from
        name = name or ("numba" if nnlite.available()["numba"] is None else "numpy")
    try:
        nnlite.use(name)
    except nnlite.backends.BackendError as err:
        raise UserError(f"{source}{err}") from None
    return name
