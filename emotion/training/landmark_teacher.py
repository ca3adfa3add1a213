"""Teacher labels for FER2013: 68 iBUG landmarks and yaw/pitch/roll from MediaPipe face mesh.

Runs only in MediaPipe's own virtual environment (mediapipe 0.10.21, the last release whose
legacy `face_mesh` ships its model inside the wheel), never in the project's: it imports
nothing from the project except `emotion.face.ibug68`, which is pure NumPy.

    ../mpvenv/bin/python -m emotion.training.landmark_teacher \\
        --data fer2013.csv.gz \\
        --out data/landmarks/fer2013_mediapipe.npz

Each 48x48 face is upscaled 4x (cubic) and padded by a quarter with its border replicated
(the mesh's own face detector misses most faces that fill the frame at 48 px), run through
`FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)`, and its 468
points mapped back to 48x48 pixel coordinates (continuous, pixel centres at i + 0.5, as
OpenCV's resize has them) and to the 68 iBUG points by MP_TO_IBUG68. The head pose is a
rigid fit with scale (Umeyama) of the mesh's 3D points at the rigid iBUG points to MediaPipe's
canonical face, in `emotion/face/pose.py`'s conventions.

Output (.npz, written to a temporary file and renamed into place):
    landmarks (N, 68, 2) float32  48x48 pixel coordinates, NaN where no mesh was found
    pose      (N, 3)     float32  yaw, pitch, roll in degrees, NaN where no mesh was found
    found     (N,)       bool
    usage     (N,)       str      Training / PublicTest / PrivateTest
    source_sha256, mediapipe_version, created, command: how the file was made
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import hashlib
import os
import shlex
import sys
import time

import numpy as np

from emotion.face import ibug68

FER_SIZE = 48
UPSCALE = 4           # 48 -> 192 px: the mesh's detector needs a face larger than 48 px
PAD_FRACTION = 0.25   # a quarter of the upscaled side on every side: 192 -> 288 px

# MediaPipe face mesh index (of 468) for each of the 68 iBUG points, in iBUG order.
# Source: Peizhi Yan, "Mediapipe_2_Dlib_Landmarks" (2024),
# https://github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, mediapipe2dlib/mp2dlib.py. Where
# that table averages two mesh points (jaw 3, 4 and 12, nose bridge 27 and 28) one is kept,
# chosen so that the table stays mirror-symmetric (MediaPipe's mirror of index 132 is 361,
# 58 is 288), which keeps ibug68.FLIP true of the labels (tested against the canonical face).
# Checked by eye on single_face.jpg (the 68 points drawn with their numbers).
MP_TO_IBUG68 = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,  # jaw
    70, 63, 105, 66, 107,                  # right brow (image left), outer to inner
    336, 296, 334, 293, 300,               # left brow, inner to outer
    168, 197, 5, 4,                        # nose bridge, top to tip
    75, 97, 2, 326, 305,                   # nose base
    33, 160, 158, 133, 153, 144,           # right eye: outer corner, upper lid, inner, lower
    362, 385, 387, 263, 373, 380,          # left eye: inner corner, upper lid, outer, lower
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,   # outer lip from the right corner
    78, 82, 13, 312, 308, 317, 14, 87,                    # inner lip
)

# MediaPipe's canonical face (mediapipe/modules/face_geometry/data/canonical_face_model.obj,
# Apache-2.0; not in the 0.10.21 wheel) at the 68 points above, in centimetres and turned into
# the mesh's image frame: x right, y down, z away from the camera (the .obj has y up and z
# toward the viewer). It is frontal and mirror-symmetric: yaw = pitch = roll = 0.
CANONICAL_68 = np.array([
    (-7.743, -2.365, 2.005), (-7.664, -0.673, 2.436), (-7.542, 1.049, 2.431),
    (-7.271, 2.891, 2.252), (-6.720, 4.789, 1.745), (-5.085, 7.179, -0.715),
    (-4.069, 7.993, -1.925), (-2.309, 8.974, -3.609), (0.000, 9.403, -4.264),
    (2.309, 8.974, -3.609), (4.069, 7.993, -1.925), (5.085, 7.179, -0.715),
    (6.720, 4.789, 1.745), (7.271, 2.891, 2.252), (7.542, 1.049, 2.431),
    (7.664, -0.673, 2.436), (7.743, -2.365, 2.005),
    (-5.721, -4.255, -2.831), (-4.986, -4.802, -3.752), (-3.987, -5.109, -4.466),
    (-2.760, -5.101, -5.016), (-1.396, -5.012, -5.316),
    (1.396, -5.012, -5.316), (2.760, -5.101, -5.016), (3.987, -5.109, -4.466),
    (4.986, -4.802, -3.752), (5.721, -4.255, -2.831),
    (0.000, -3.271, -5.236), (0.000, -1.728, -6.317), (0.000, -0.366, -7.243),
    (0.000, 0.463, -7.587),
    (-1.044, 1.465, -5.662), (-0.597, 2.014, -5.866), (0.000, 2.089, -6.058),
    (0.597, 2.014, -5.866), (1.044, 1.465, -5.662),
    (-4.446, -2.664, -3.173), (-3.670, -2.928, -3.724), (-2.724, -2.962, -3.872),
    (-1.856, -2.585, -3.758), (-2.724, -2.316, -3.777), (-3.670, -2.360, -3.635),
    (1.856, -2.585, -3.758), (2.724, -2.962, -3.872), (3.670, -2.928, -3.724),
    (4.446, -2.664, -3.173), (3.670, -2.360, -3.635), (2.724, -2.316, -3.777),
    (-2.456, 4.343, -4.284), (-1.432, 3.501, -5.496), (-0.711, 3.329, -5.877),
    (0.000, 3.406, -5.980), (0.711, 3.329, -5.877), (1.432, 3.501, -5.496),
    (2.456, 4.343, -4.284), (1.839, 4.829, -4.824), (0.700, 5.292, -5.448),
    (0.000, 5.365, -5.535), (-0.700, 5.292, -5.448), (-1.839, 4.829, -4.824),
    (-2.153, 4.276, -4.038), (-0.533, 3.993, -5.138), (0.000, 3.994, -5.219),
    (0.533, 3.993, -5.138), (2.153, 4.276, -4.038), (0.583, 4.518, -5.340),
    (0.000, 4.542, -5.405), (-0.583, 4.518, -5.340),
], dtype=np.float64)

# The points the pose is fitted on: those an expression hardly moves (upper jaw by the ears,
# the eye corners, the nose). Brows rise, lids close and the chin drops with the mouth.
RIGID = (0, 1, 2, 14, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)


# ---- geometry: pure NumPy, tested without MediaPipe -----------------------------------------

def prepare(face48: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The RGB image the mesh sees for one (48, 48) uint8 face, with (pad px, scale)."""
    import cv2
    size = FER_SIZE * UPSCALE
    pad = int(round(size * PAD_FRACTION))
    big = cv2.resize(face48, (size, size), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2RGB), float(pad), float(UPSCALE)


def to_face_pixels(xyz_norm: np.ndarray, image_size: tuple[int, int], pad: float,
                   scale: float) -> np.ndarray:
    """Mesh points (K, 3) normalised to the padded image -> (K, 3) in the 48x48 face's pixels.

    MediaPipe gives x, y as fractions of the image's width and height (0 at the left and top
    edges) and z on the scale of x. Undo the padding, then the upscale; z gets the same scale.
    """
    height, width = image_size
    xyz = np.asarray(xyz_norm, dtype=np.float64) * (width, height, width)
    xyz[:, 0] -= pad
    xyz[:, 1] -= pad
    return xyz / scale


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity (s, R, t) that best maps src (K, 3) onto dst (K, 3): dst ~ s R src + t.

    Umeyama (1991): the rotation from the SVD of the cross-covariance, with the sign of the
    last singular vector flipped when that would otherwise give a reflection.
    """
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_src, dst - mu_dst
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((sigma * d).sum() / (a ** 2).sum(axis=1).mean())
    return scale, rotation, mu_dst - scale * rotation @ mu_src


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(-yaw) Rx(-pitch), in the image frame.

    pose.py's conventions: yaw > 0 turns the nose toward the image's right, pitch > 0 lifts
    the chin, roll > 0 tilts the head clockwise on screen. Roll is applied last, in the image
    plane, so it is exactly the angle of the rotated eye line (R's first column) seen from
    the camera, which is what pose.py measures from the eye centres. The minus signs: with y
    down and z away from the camera, Ry(+a) swings the nose (0, 0, -1) to the image's left
    and Rx(+a) swings it down.
    """
    r = rotation
    yaw = -np.degrees(np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2])))
    pitch = -np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The inverse of angles_from_rotation (degrees in): for tests and synthetic faces."""
    def rx(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    y, p, r = np.radians([yaw, pitch, roll])
    return rz(r) @ ry(-y) @ rx(-p)


def pose_from_points(points3d: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face's (68, 3) iBUG points in the image frame."""
    rigid = list(RIGID)
    _, rotation, _ = umeyama(CANONICAL_68[rigid], np.asarray(points3d, np.float64)[rigid])
    return angles_from_rotation(rotation)


# ---- MediaPipe ------------------------------------------------------------------------------

def new_mesh(max_num_faces: int = 1):
    """The legacy face mesh on still images (the import is here: only this venv has it)."""
    import mediapipe as mp
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_num_faces,
                                           refine_landmarks=False)


def mesh_points(result, image_shape: tuple[int, int]) -> list[np.ndarray]:
    """Every face of a FaceMesh result as (468, 3) normalised (x, y, z)."""
    if not result.multi_face_landmarks:
        return []
    return [np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            for face in result.multi_face_landmarks]


def label_face48(mesh, face48: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(landmarks (68, 2), pose (3,)) of one 48x48 uint8 face, or None where no mesh."""
    image, pad, scale = prepare(face48)
    faces = mesh_points(mesh.process(image), image.shape[:2])
    if not faces:
        return None
    points = to_face_pixels(faces[0], image.shape[:2], pad, scale)[list(MP_TO_IBUG68)]
    return points[:, :2], np.array(pose_from_points(points))


# ---- the labelling run ----------------------------------------------------------------------

def read_fer2013(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces (N, 48, 48) uint8, usage (N,) str) from FER2013's CSV, gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    faces, usage = [], []
    with opener(path, "rt", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            pixels = np.array(row["pixels"].split(), dtype=np.int64)
            if pixels.size != FER_SIZE * FER_SIZE or pixels.min() < 0 or pixels.max() > 255:
                raise ValueError(f"{path} line {line}: 'pixels' is not {FER_SIZE * FER_SIZE} "
                                 f"values 0-255")
            faces.append(pixels.astype(np.uint8).reshape(FER_SIZE, FER_SIZE))
            usage.append(row["Usage"])
    return np.stack(faces), np.array(usage)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_MESH = None


def _label_chunk(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label a chunk with this process's own mesh (a FaceMesh is not shared across processes)."""
    global _MESH
    if _MESH is None:
        _MESH = new_mesh()
    landmarks = np.full((len(faces), 68, 2), np.nan, np.float32)
    pose = np.full((len(faces), 3), np.nan, np.float32)
    found = np.zeros(len(faces), bool)
    for i, face in enumerate(faces):
        labelled = label_face48(_MESH, face)
        if labelled is not None:
            landmarks[i], pose[i] = labelled
            found[i] = True
    return landmarks, pose, found


def label_all(faces: np.ndarray, workers: int, chunk: int = 500, log=sys.stderr):
    """Label every face, `workers` processes, printing progress as chunks finish."""
    chunks = [faces[i:i + chunk] for i in range(0, len(faces), chunk)]
    start, done, parts = time.perf_counter(), 0, []
    if workers > 1:
        import multiprocessing
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_label_chunk, chunks)
    else:
        pool, results = None, map(_label_chunk, chunks)
    try:
        for part in results:
            parts.append(part)
            done += len(part[2])
            rate = done / (time.perf_counter() - start)
            print(f"{done}/{len(faces)} rows, {rate:.0f} rows/s", file=log, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return tuple(np.concatenate(arrays) for arrays in zip(*parts)), time.perf_counter() - start


def save_atomically(path: str, **arrays) -> None:
    """np.savez_compressed to `path`, through a temporary file renamed into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emotion.training.landmark_teacher",
        description="Label FER2013 with 68 landmarks and head pose from MediaPipe face mesh.")
    parser.add_argument("--data", required=True, help="fer2013.csv or fer2013.csv.gz")
    parser.add_argument("--out", required=True, help="the .npz to write")
    parser.add_argument("--limit", type=int, default=None, help="label only the first N rows")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (default 1: the machines are small and shared)")
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", __spec__.name
                                                if __spec__ else __name__] + sys.argv[1:])
    if args.limit is not None and args.limit < 1 or args.workers < 1:
        print("error: --limit and --workers must be at least 1", file=sys.stderr)
        return 2
    if not os.path.isfile(args.data):
        print(f"error: no FER2013 file at {args.data}: pass --data the path of fer2013.csv(.gz)",
              file=sys.stderr)
        return 2
    if os.path.abspath(args.out) == os.path.abspath(args.data):
        print("error: --out must not be the input file", file=sys.stderr)
        return 2
    try:
        import mediapipe
    except ImportError:
        print("error: mediapipe is not installed here: run this with MediaPipe's own venv "
              "(e.g. ../mpvenv/bin/python)", file=sys.stderr)
        return 2
    try:
        faces, usage = read_fer2013(args.data)
    except (ValueError, KeyError, OSError, csv.Error) as e:
        print(f"error: cannot read {args.data} as FER2013: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        faces, usage = faces[:args.limit], usage[:args.limit]

    (landmarks, pose, found), seconds = label_all(faces, args.workers)
    save_atomically(
        args.out, landmarks=landmarks, pose=pose, found=found, usage=usage,
        source_sha256=np.array(sha256_of(args.data)),
        mediapipe_version=np.array(mediapipe.__version__),
        created=np.array(datetime.date.today().isoformat()), command=np.array(command))
    print(f"wrote {args.out}: {len(faces)} rows, mesh found on {found.mean():.1%}, "
          f"{len(faces) / seconds:.1f} rows/s ({args.workers} worker(s))")
    for split in np.unique(usage):
        rows = usage == split
        print(f"  {split}: {found[rows].mean():.1%} of {rows.sum()} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
