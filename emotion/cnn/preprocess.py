"""The preprocessing of the original design, as explicit steps, in ONE function.

    gray 0..255 -> gamma correction -> Gaussian filter -> [histogram equalization]
                -> normalization -> float32 (N, 1, 48, 48)

`preprocess` is what training applies to FER2013 and what the live demo applies to each face
crop (through `face_to_input` / `faces_to_batch`, which only convert to gray and resize
first). One code path means the network sees at inference exactly the statistics it was
trained on. The config is saved inside the weight file (`to_dict` / `from_dict`), so a model
always comes with its own preprocessing.
"""

from dataclasses import asdict, dataclass, fields, replace

import cv2
import numpy as np

from emotion.errors import UserError

SIZE = 48  # FER2013 images are 48x48
STD_FLOOR = 1e-2  # per-image normalization divides by max(std, this): see preprocess
NORMALIZE_MODES = ("per_image", "dataset", "none")


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of each step (the defaults are the ones training uses).

    gamma:          out = 255 * (in / 255) ** (1 / gamma). gamma > 1 brightens the shadows,
                    gamma < 1 darkens them, 1 leaves the image alone. Default 1.2, a slight
                    lift: FER2013 is mid-gray on average (mean 129 of 255), but 7% of its
                    training faces average below 80, and webcam faces are often underexposed.
                    Per-image normalization undoes a linear change of brightness and contrast,
                    not a crushed shadow range; 1.2 stretches the darkest tenth of the range
                    by 20-60% and moves mid-gray from 128 to 143. Changing it means
                    retraining: the model must see at inference what it saw in training.
    gaussian_sigma: std of the Gaussian filter in pixels; 0 disables it. Default 0.5, a light
                    blur: it takes off JPEG blocking and sensor noise (webcam frames are much
                    noisier than FER2013) without erasing the wrinkles around eyes and mouth
                    that carry the expression; at 48x48 a wrinkle is only 1-2 pixels wide.
    gaussian_ksize: odd kernel width; 0 derives it from sigma (3 sigma each side).
    equalize:       histogram equalization after the blur. Off by default: normalization
                    already fixes brightness and contrast, and equalization amplifies noise in
                    flat regions. (Equalization also makes gamma nearly irrelevant: it remaps
                    any monotonic brightness curve to the same flat histogram.)
    normalize:      "per_image": subtract each image's mean and divide by its std, which
                    makes the input invariant to lighting; "dataset": subtract `mean` and
                    divide by `std` measured on the training set (see fit_dataset_stats);
                    "none": just scale to 0..1.
    mean, std:      the dataset statistics for normalize="dataset", on the 0..1 scale.
    """

    gamma: float = 1.2
    gaussian_sigma: float = 0.5
    gaussian_ksize: int = 0
    equalize: bool = False
    normalize: str = "per_image"
    mean: float | None = None
    std: float | None = None

    def __post_init__(self):
        # A config can come from a weight file, so every field is checked with a clear message.
        number = (int, float, np.integer, np.floating)
        if not isinstance(self.gamma, number) or not self.gamma > 0:
            raise UserError(f"gamma must be a positive number, got {self.gamma!r}")
        if not isinstance(self.gaussian_sigma, number) or not self.gaussian_sigma >= 0:
            raise UserError(f"gaussian_sigma must be >= 0, got {self.gaussian_sigma!r}")
        ksize = self.gaussian_ksize
        if not isinstance(ksize, (int, np.integer)) or ksize < 0 or (ksize and ksize % 2 == 0):
            raise UserError(f"gaussian_ksize must be 0 or an odd positive integer, got {ksize!r}")
        if not isinstance(self.equalize, (bool, np.bool_)):
            raise UserError(f"equalize must be true or false, got {self.equalize!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise UserError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, "
                            f"not {self.normalize!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, number):
                raise UserError(f"{name} must be a number or None, got {value!r}")
        if self.std is not None and not self.std > 0:
            raise UserError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict:
        """Plain JSON-serializable dict (stored with the model weights)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """The config saved by `to_dict`; a UserError names any unknown or invalid setting."""
        if not isinstance(d, dict):
            raise UserError(f"a preprocessing config must be a dict, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UserError(f"unknown preprocessing settings {unknown}; known: {known}")
        return cls(**d)


def fit_dataset_stats(images, config: PreprocessConfig = PreprocessConfig()) -> PreprocessConfig:
    """`config` with normalize="dataset" and the mean/std of `images` measured after the steps
    that come before normalization (so they match what normalization will see)."""
    x = _before_normalization(_as_batch(images), config)
    if x.size == 0:
        raise UserError("cannot measure dataset statistics on no images")
    # float64 accumulation: a float32 sum over 66 million pixels loses digits
    mean = float(x.mean(dtype=np.float64))
    std = float(x.std(dtype=np.float64))
    return replace(config, normalize="dataset", mean=mean, std=std)


def preprocess(images, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """The whole pipeline on gray images with values 0..255.

    images: (N, H, W) or (N, 1, H, W) (a single (H, W) image is taken as N = 1), uint8 or
            float -> float32 (N, 1, H, W). Training data and face_to_input give H = W = 48.
    """
    x = _before_normalization(_as_batch(images), config)
    if config.normalize == "per_image":
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
        # A floor instead of "+ eps": a flat image (std ~ 0) stays near 0 instead of having
        # its last bits of noise blown up to unit variance. 0.01 is 2.5 gray levels; real
        # faces have std around 0.2, so they never reach it.
        x = (x - mean) / np.maximum(std, np.float32(STD_FLOOR))
    elif config.normalize == "dataset":
        if config.mean is None or config.std is None:
            raise UserError("normalize='dataset' needs mean and std (use fit_dataset_stats)")
        x = (x - np.float32(config.mean)) / np.float32(config.std)
    return x[:, None].astype(np.float32, copy=False)


def preprocess_steps(gray48, config: PreprocessConfig = PreprocessConfig()):
    """Each intermediate image of `preprocess`, for a learner: [(step name, (H, W) float32)].

    Steps: gray, gamma, Gaussian (if sigma > 0), equalized (if on), normalized. All but the
    last are on the 0..255 scale; the last is what the network sees.
    """
    x = _as_batch(gray48)[:1]
    steps = [("gray", x[0].astype(np.float32))]
    image = _gamma(x, config.gamma)
    steps.append((f"gamma {config.gamma:g}", image[0] * 255))
    if config.gaussian_sigma > 0:
        image = gaussian_blur(image, config.gaussian_sigma, config.gaussian_ksize)
        steps.append((f"Gaussian sigma {config.gaussian_sigma:g}", image[0] * 255))
    if config.equalize:
        image = equalize(image)
        steps.append(("equalized", image[0] * 255))
    steps.append((f"normalized ({config.normalize})", preprocess(x, config)[0, 0]))
    return steps


# -- the steps -------------------------------------------------------------------------------
def _as_batch(images) -> np.ndarray:
    """(N, H, W), (N, 1, H, W) or one (H, W) image -> (N, H, W), without copying."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise UserError(f"expected gray images (N, H, W) or (N, 1, H, W), got shape {x.shape}")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)
            or np.issubdtype(x.dtype, np.integer)):
        raise UserError(f"expected gray levels as uint8 or float, got dtype {x.dtype}")
    return x


def _before_normalization(x, config) -> np.ndarray:
    """Gamma, Gaussian and equalization on a batch (N, H, W) of 0..255 -> [0, 1] float32."""
    x = _gamma(x, config.gamma)
    if config.gaussian_sigma > 0:
        x = gaussian_blur(x, config.gaussian_sigma, config.gaussian_ksize)
    if config.equalize:
        x = equalize(x)
    return x


def _gamma(x, gamma: float) -> np.ndarray:
    """0..255 gray levels (N, H, W) -> gamma-corrected float32 in [0, 1]."""
    if x.dtype == np.uint8:
        # 256 possible inputs: look the answers up instead of a power per pixel
        table = ((np.arange(256) / 255.0) ** (1.0 / gamma)).astype(np.float32)
        return table[x]
    x = np.clip(x.astype(np.float32, copy=False) / np.float32(255), 0, 1)
    return x if gamma == 1.0 else x ** np.float32(1.0 / gamma)


def gaussian_kernel(sigma: float, ksize: int = 0) -> np.ndarray:
    """1-D Gaussian weights summing to 1, float32 (ksize,) with ksize odd (0: about 3 sigma
    each side). The same kernel as cv2.getGaussianKernel(ksize, sigma)."""
    if ksize <= 0:
        ksize = 2 * int(np.ceil(3 * sigma)) + 1
    r = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-(r**2) / (2 * sigma**2))
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(x, sigma: float, ksize: int = 0) -> np.ndarray:
    """Gaussian blur of every image of a float32 batch (N, H, W), mirrored at the borders.

    A 2-D Gaussian is separable: blurring the rows with the 1-D kernel, then the columns,
    gives the same result for 2*k instead of k*k multiplications per pixel. A 1-D filter
    along rows treats each row on its own, so the whole batch is filtered as ONE tall image
    (N*H, W) in a single OpenCV call, with no image bleeding into the next; the columns are
    done the same way after swapping the last two axes. Borders use OpenCV's default
    mirroring (BORDER_REFLECT_101), so each image matches cv2.GaussianBlur on its own.
    """
    kernel = gaussian_kernel(sigma, ksize)[None, :]  # (1, ksize): a row filter
    n, h, w = x.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size == 0:  # OpenCV refuses an empty image; an empty batch simply stays empty
        return x.copy()
    rows = cv2.filter2D(x.reshape(n * h, w), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    columns = np.ascontiguousarray(rows.reshape(n, h, w).transpose(0, 2, 1)).reshape(n * w, h)
    columns = cv2.filter2D(columns, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(columns.reshape(n, w, h).transpose(0, 2, 1))


def equalize(x) -> np.ndarray:
    """Histogram equalization of each image of a batch (N, H, W) in [0, 1] -> float32 [0, 1].

    Equalization maps gray levels through the image's cumulative histogram so that all
    levels are about equally used. It is defined on 256 levels, so the values are rounded
    to 8 bits first. One cv2.equalizeHist per image: the histogram is per image anyway, and
    OpenCV builds it in C faster than a batched NumPy version could.
    """
    levels = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    out = np.empty(levels.shape, np.uint8)
    for i, image in enumerate(levels):
        out[i] = cv2.equalizeHist(image)
    return out.astype(np.float32) / np.float32(255)


# -- from any image to the network's input ----------------------------------------------------
def to_gray(image) -> np.ndarray:
    """Any image array -> uint8 gray (H, W).

    Accepts gray (H, W) or (H, W, 1), BGR (H, W, 3) or BGRA (H, W, 4), as uint8, uint16 (the
    top 8 bits are kept: 65535 -> 255) or float (taken as 0..1, OpenCV's convention). The
    conversion is the one the face pipeline uses (emotion.io.images.to_gray8); this adds the
    checks that give a clear error for anything else.
    """
    from emotion.io.images import to_gray8

    x = np.asarray(image)
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (1, 3, 4)):
        raise UserError(f"expected a gray (H, W), BGR (H, W, 3) or BGRA (H, W, 4) image, got an "
                        f"array of shape {x.shape}")
    if x.size == 0:
        raise UserError(f"empty image (shape {x.shape})")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer)
                                   or np.issubdtype(x.dtype, np.floating)):
        raise UserError(f"expected uint8, uint16 or float pixels, got dtype {x.dtype}")
    return to_gray8(x)


def resize_face(face) -> np.ndarray:
    """A face crop of any size (any format to_gray takes) -> 48x48 uint8 gray.

    INTER_AREA averages the source pixels under each output pixel, so shrinking a big webcam
    crop does not alias; INTER_LINEAR interpolates smoothly when enlarging a small one.
    """
    face = to_gray(face)
    if face.shape == (SIZE, SIZE):
        return face
    shrinking = face.shape[0] > SIZE or face.shape[1] > SIZE
    return cv2.resize(face, (SIZE, SIZE),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def face_to_input(gray_face, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """One face crop of any size -> (1, 48, 48) float32 network input, by the training
    pipeline (`preprocess`)."""
    return preprocess(resize_face(gray_face)[None], config)[0]


def faces_to_batch(crops, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Face crops of any sizes -> (N, 1, 48, 48) float32, preprocessed as one batch."""
    if len(crops) == 0:
        return np.zeros((0, 1, SIZE, SIZE), np.float32)
    return preprocess(np.stack([resize_face(c) for c in crops]), config)
