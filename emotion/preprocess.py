"""The preprocessing of the original design, as explicit steps, in ONE function.

    gray -> gamma correction -> Gaussian filter -> [histogram equalization] -> normalization

`preprocess` is what training applies to FER2013 and what the live demo applies to each face
crop (through `face_to_input` / `faces_to_batch`, which only resize first). One code path
means the network sees at inference exactly the statistics it was trained on. The config is
saved inside the weight file, so a model always comes with its own preprocessing.
"""

from dataclasses import asdict, dataclass, fields, replace

import cv2
import numpy as np

from emotion.errors import UserError

SIZE = 48  # FER2013 images are 48x48


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of each step.

    gamma:           out = in ** (1 / gamma) on [0, 1]; gamma > 1 lifts the dark faces that
                     are common in FER2013 (webcam shots, shadows). 1 disables it.
    gaussian_sigma:  std of the Gaussian filter in pixels; a light blur (0.5) takes off JPEG
                     blocking and sensor noise without erasing the wrinkles around eyes and
                     mouth that carry the expression. 0 disables it.
    gaussian_ksize:  odd kernel size; 0 derives it from sigma (about 3 sigma each side).
    equalize:        histogram equalization (off by default: per-image normalization already
                     fixes brightness and contrast, and equalization amplifies noise).
    normalize:       "per_image" (zero mean, unit std per image: brightness/contrast
                     invariant), "dataset" (subtract `mean`, divide by `std` of the training
                     set) or "none" (just [0, 1]).
    """

    gamma: float = 1.2
    gaussian_sigma: float = 0.5
    gaussian_ksize: int = 0
    equalize: bool = False
    normalize: str = "per_image"
    mean: float | None = None
    std: float | None = None

    def __post_init__(self):
        if self.normalize not in ("per_image", "dataset", "none"):
            raise UserError(f"normalize must be per_image, dataset or none, not {self.normalize!r}")
        if self.gamma <= 0:
            raise UserError(f"gamma must be positive, got {self.gamma}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown preprocessing settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def fit_dataset_stats(images, config: PreprocessConfig = PreprocessConfig()) -> PreprocessConfig:
    """The config with `mean`/`std` measured on `images` after the steps before normalization."""
    x = _before_normalization(_as_batch(images), config)
    return replace(config, normalize="dataset", mean=float(x.mean()), std=float(x.std()))


def gaussian_kernel(sigma: float, ksize: int = 0) -> np.ndarray:
    """1-D Gaussian weights summing to 1 (the 2-D filter is separable: rows, then columns)."""
    if ksize <= 0:
        ksize = 2 * int(np.ceil(3 * sigma)) + 1
    r = np.arange(ksize, dtype=np.float32) - (ksize - 1) / 2
    k = np.exp(-(r**2) / (2 * sigma**2))
    return (k / k.sum()).astype(np.float32)


def _blur(x, sigma, ksize):
    """Separable Gaussian blur of a batch (N, H, W), mirror-padded like OpenCV's default."""
    k = gaussian_kernel(sigma, ksize)
    r = len(k) // 2
    h, w = x.shape[1:]
    padded = np.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect")
    x = sum(k[i] * padded[:, i : i + h] for i in range(len(k)))
    padded = np.pad(x, ((0, 0), (0, 0), (r, r)), mode="reflect")
    return sum(k[i] * padded[:, :, i : i + w] for i in range(len(k)))


def _as_batch(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise UserError(f"expected gray images (N, H, W) or (N, 1, H, W), got shape {x.shape}")
    return x


def _before_normalization(x, config):
    """Gamma, Gaussian and equalization on a batch (N, H, W) of 0..255 values -> [0, 1] float32."""
    if config.equalize:
        x = np.stack([cv2.equalizeHist(np.clip(i, 0, 255).astype(np.uint8)) for i in x])
    if x.dtype == np.uint8 and config.gamma != 1.0:
        table = (255.0 * (np.arange(256) / 255.0) ** (1.0 / config.gamma)).astype(np.float32)
        x = table[x] / np.float32(255)  # a 256-entry lookup instead of a power per pixel
    else:
        x = x.astype(np.float32) / np.float32(255)
        if config.gamma != 1.0:
            x = np.clip(x, 0.0, 1.0) ** np.float32(1.0 / config.gamma)
    if config.gaussian_sigma > 0:
        x = _blur(x, config.gaussian_sigma, config.gaussian_ksize)
    return x.astype(np.float32, copy=False)


def preprocess(images, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """The whole pipeline on gray images with values 0..255.

    images: (N, H, W) or (N, 1, H, W), uint8 or float -> float32 (N, 1, H, W).
    """
    x = _before_normalization(_as_batch(images), config)
    if config.normalize == "per_image":
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
        x = (x - mean) / np.maximum(std, np.float32(1e-2))  # a blank image stays finite
    elif config.normalize == "dataset":
        if config.mean is None or config.std is None:
            raise UserError("normalize='dataset' needs mean and std (use fit_dataset_stats)")
        x = (x - np.float32(config.mean)) / np.float32(config.std)
    return x[:, None].astype(np.float32, copy=False)


def preprocess_steps(gray48, config: PreprocessConfig = PreprocessConfig()):
    """Each intermediate image of `preprocess`, for a learner: [(step name, 2-D image)]."""
    x = _as_batch(gray48)[:1]
    steps = [("gray", x[0].astype(np.float32))]
    once = lambda **kw: _before_normalization(x, replace(config, **kw))[0]  # noqa: E731
    steps.append((f"gamma {config.gamma:g}", once(gaussian_sigma=0, equalize=False) * 255))
    if config.gaussian_sigma > 0:
        steps.append((f"Gaussian sigma {config.gaussian_sigma:g}", once(equalize=False) * 255))
    if config.equalize:
        steps.append(("equalized", once() * 255))
    steps.append((f"normalized ({config.normalize})", preprocess(x, config)[0, 0]))
    return steps


def to_gray(image) -> np.ndarray:
    """Any image array -> uint8 gray (H, W): BGR, BGRA, gray, (H, W, 1); uint8, uint16 or float."""
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (3, 4)):
        raise UserError(f"expected a gray, BGR or BGRA image, got an array of shape {x.shape}")
    if x.dtype == np.uint16:
        x = (x >> 8).astype(np.uint8)  # keep the top 8 of 16 bits
    elif x.dtype.kind == "f":
        scale = 255.0 if x.max(initial=0) <= 1.0 else 1.0
        x = np.clip(x * scale, 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if x.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        x = cv2.cvtColor(x, code)
    return x


def resize_face(gray_face) -> np.ndarray:
    """A gray crop of any size -> 48x48 uint8 (area averaging when shrinking: no aliasing)."""
    face = to_gray(gray_face)
    if face.size == 0:
        raise UserError("empty face crop")
    if face.shape == (SIZE, SIZE):
        return face
    shrinking = face.shape[0] > SIZE or face.shape[1] > SIZE
    return cv2.resize(face, (SIZE, SIZE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def face_to_input(gray_face, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """One face crop -> (1, 48, 48) float32 network input, by the training pipeline."""
    return preprocess(resize_face(gray_face)[None], config)[0]


def faces_to_batch(crops, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Face crops of any sizes -> (N, 1, 48, 48) float32, preprocessed as one batch."""
    if len(crops) == 0:
        return np.zeros((0, 1, SIZE, SIZE), np.float32)
    return preprocess(np.stack([resize_face(c) for c in crops]), config)
