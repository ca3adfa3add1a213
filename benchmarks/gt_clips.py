"""Ground-truth clips: the shared photos' faces moved, zoomed and rolled over a busy
background, with every face's true box in every frame.

    python -m benchmarks.gt_clips [--out data/gt_clips] [--force]

Each clip is an .mp4 (mp4v) and, beside it, a .json with the true boxes. They are made on
demand into a cache folder (data/gt_clips by default, ignored by git: never committed), the
same bytes of truth for the same seed (NumPy's seeded generator draws every path), in a few
seconds. A clip is remade when the generator's VERSION or the clip's recipe changes.

Where the boxes come from. A face's reference box is what the project's photo detector
(FaceDetector(PHOTO_CONFIG), the detector of `emotion predict`) finds on the still photo,
upright and at full resolution, where it finds every face of the three photos (9 faces,
checked by eye on 2026-12-07). A face is pasted as a patch of the photo around that box
(the box grown by PATCH_MARGIN on every side, with a soft oval edge so that no straight
seam runs through the background), through one affine map per frame: scale s, roll a about
the box's centre, then a move. The true box is the reference box's centre sent through that
map, with the reference box's size times s: the box a detector draws around a tilted face
is upright and face-sized, not the bounding box of the rotated square (at 30 degrees that
would be 1.37 times wider, and would fail IoU 0.5 against a face-sized box by itself).

A face partly outside the frame has `visible` < 1 (the share of its box inside): the
scorer counts a face only when most of it is in view (gt_score.MIN_VISIBLE) and ignores a
report on a face that is only partly in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "data" / "media"
CACHE = ROOT / "data" / "gt_clips"
VERSION = 1
PATCH_MARGIN = 0.45   # hair, ears and chin around the box: the cascade sees a whole head
FPS = 30.0


@dataclass(frozen=True)
class FacePath:
    """One face through one clip: key frames of centre (x, y), face width (px) and roll
    (degrees), linearly interpolated; before `start` and after `end` the face is absent."""

    photo: str        # single_face, two_faces or group_selfie
    index: int        # which reference box of that photo (left to right)
    start: int
    end: int
    keys: tuple       # ((t in [0, 1], cx, cy, width, roll), ...)


def reference_boxes(photo: str, cache: Path = CACHE) -> list[tuple[int, int, int, int]]:
    """The photo detector's boxes on the still photo, left to right (cached in a JSON, since a
    2048x1536 scan takes a second)."""
    path = cache / f"reference_{photo}.json"
    if path.exists():
        return [tuple(b) for b in json.loads(path.read_text())]
    from emotion.face.detector import PHOTO_CONFIG, FaceDetector

    gray = cv2.cvtColor(load_photo(photo), cv2.COLOR_BGR2GRAY)
    boxes = FaceDetector(PHOTO_CONFIG).detect(gray)
    write_atomic(path, json.dumps([list(map(int, b)) for b in boxes]).encode())
    return boxes


def load_photo(photo: str) -> np.ndarray:
    image = cv2.imread(str(MEDIA / f"{photo}.jpg"))
    if image is None:
        raise SystemExit(f"photo not found: {MEDIA / photo}.jpg (the shared media are needed)")
    return image


def face_patch(image: np.ndarray, box) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(patch BGR, alpha in [0, 1] float32, the box's centre in patch pixels). The patch is
    the box grown by PATCH_MARGIN, padded by edge replication where the photo ends."""
    x, y, w, h = box
    mx, my = int(round(w * PATCH_MARGIN)), int(round(h * PATCH_MARGIN))
    padded = cv2.copyMakeBorder(image, my, my, mx, mx, cv2.BORDER_REPLICATE)
    patch = padded[y:y + h + 2 * my, x:x + w + 2 * mx].copy()
    ph, pw = patch.shape[:2]
    # An oval that holds the whole box at full opacity and fades out over the margin.
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    r = np.hypot((xx - pw / 2) / (pw / 2), (yy - ph / 2) / (ph / 2))
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0).astype(np.float32)
    return patch, alpha, (pw / 2.0, ph / 2.0)


def busy_background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Colour noise at several scales with random strokes and discs: edges and blobs of every
    size, where a face detector can fire falsely, and no face."""
    w, h = size
    image = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((4, 90.0), (16, 60.0), (64, 35.0), (256, 20.0)):
        noise = rng.random((max(2, cells * h // w), cells, 3)).astype(np.float32)
        image += weight * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(60):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
            p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
            cv2.line(image, p1, p2, color, int(rng.integers(1, 6)))
        else:
            centre = tuple(int(v) for v in rng.integers(0, (w, h)))
            cv2.circle(image, centre, int(rng.integers(4, 40)), color, -1)
    return image


def face_at(path: FacePath, frame: int, n_frames: int) -> tuple[float, float, float, float] | None:
    """(cx, cy, width, roll) of the face at `frame`, or None when it is absent."""
    if not path.start <= frame <= path.end:
        return None
    t = frame / max(1, n_frames - 1)
    keys = path.keys
    if t <= keys[0][0]:
        return keys[0][1:]
    for a, b in zip(keys, keys[1:]):
        if t <= b[0]:
            u = (t - a[0]) / max(1e-9, b[0] - a[0])
            return tuple(av + u * (bv - av) for av, bv in zip(a[1:], b[1:]))
    return keys[-1][1:]


def affine(centre_in_patch, ref_width, cx, cy, width, roll) -> np.ndarray:
    """The 2x3 map from patch pixels to frame pixels: scale, roll about the face's centre
    (positive roll turns the face clockwise on screen, image y pointing down), then move."""
    s = width / ref_width
    a = math.radians(roll)
    c, si = s * math.cos(a), s * math.sin(a)
    px, py = centre_in_patch
    return np.array([[c, -si, cx - (c * px - si * py)],
                     [si, c, cy - (si * px + c * py)]], np.float32)


def true_box(cx, cy, width, ref_box) -> list[float]:
    """The upright face-sized box around the moved centre (see the module docstring)."""
    w = width
    h = width * ref_box[3] / ref_box[2]
    return [cx - w / 2, cy - h / 2, w, h]


def visible_fraction(box, size) -> float:
    x, y, w, h = box
    fw, fh = size
    ix = max(0.0, min(x + w, fw) - max(x, 0.0))
    iy = max(0.0, min(y + h, fh) - max(y, 0.0))
    return ix * iy / max(1e-9, w * h)


def render(name: str, size, n_frames: int, paths: list[FacePath], seed: int, out_dir: Path,
           pan: float = 0.0) -> tuple[Path, Path]:
    """Write out_dir/name.mp4 and out_dir/name.json (atomically) and return their paths.
    `pan`: pixels per frame that the background slides left (a camera pan)."""
    rng = np.random.default_rng(seed)
    w, h = size
    # Wide enough to slide under the frame for the whole clip.
    background = busy_background((w + int(abs(pan) * n_frames) + 1, h), rng)
    sprites = {}
    for p in paths:
        if (p.photo, p.index) not in sprites:
            ref = reference_boxes(p.photo, out_dir)[p.index]
            patch, alpha, centre = face_patch(load_photo(p.photo), ref)
            sprites[p.photo, p.index] = (ref, patch.astype(np.float32), alpha, centre)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{name}.mp4"
    tmp_video = out_dir / f".{name}.tmp{os.getpid()}.mp4"
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    frames = []
    try:
        for f in range(n_frames):
            x0 = int(round(pan * f))
            frame = background[:, x0:x0 + w].astype(np.float32)
            faces = []
            for face_id, p in enumerate(paths):
                state = face_at(p, f, n_frames)
                if state is None:
                    continue
                cx, cy, width, roll = state
                ref, patch, alpha, centre = sprites[p.photo, p.index]
                m = affine(centre, ref[2], cx, cy, width, roll)
                warped = cv2.warpAffine(patch, m, (w, h), flags=cv2.INTER_AREA
                                        if width < ref[2] else cv2.INTER_LINEAR)
                a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
                frame = frame * (1.0 - a) + warped * a
                box = true_box(cx, cy, width, ref)
                vis = visible_fraction(box, (w, h))
                if vis > 0:
                    faces.append({"id": face_id, "box": [round(v, 2) for v in box],
                                  "roll": round(roll, 2), "visible": round(vis, 3)})
            writer.write(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
            frames.append({"frame": f, "faces": faces})
    finally:
        writer.release()
    os.replace(tmp_video, video)
    truth = {"clip": video.name, "version": VERSION, "seed": seed, "width": w, "height": h,
             "fps": FPS, "frames": n_frames,
             "faces": [{"id": i, "photo": p.photo, "reference_box": list(sprites[p.photo, p.index][0])}
                       for i, p in enumerate(paths)],
             "boxes": "x, y, w, h in frame pixels: the reference box's centre through the "
                      "clip's affine map, its size times the scale (benchmarks/gt_clips.py)",
             "per_frame": frames}
    labels = out_dir / f"{name}.json"
    write_atomic(labels, json.dumps(truth).encode())
    return video, labels


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def recipes(rng: np.random.Generator) -> dict:
    """The clips: name -> (size, frames, face paths, background pan px/frame). Key frames are
    drawn from `rng` within ranges that keep each clip's point (entering, leaving, small...)."""
    def roll():
        return float(rng.uniform(-30, 30))

    clips = {}
    # One face crossing the frame: enters on the left, zooms in and out, rolls both ways,
    # leaves on the right.
    clips["gt_single_cross"] = ((640, 480), 150, [
        FacePath("single_face", 0, 0, 149, (
            (0.0, -60.0, 240.0, 90.0, 0.0), (0.25, 180.0, 220.0, 150.0, -30.0),
            (0.5, 320.0, 250.0, 200.0, 0.0), (0.75, 460.0, 240.0, 110.0, 30.0),
            (1.0, 720.0, 260.0, 80.0, 0.0))),
    ], 1.0)
    # Two faces from two_faces at 720p: one there from the start and leaving at the top,
    # the other entering from the right at frame 40; both roll and zoom, and cross.
    clips["gt_two_faces"] = ((1280, 720), 180, [
        FacePath("two_faces", 0, 0, 179, (
            (0.0, 300.0, 360.0, 160.0, roll()), (0.5, 800.0, 300.0, 240.0, roll()),
            (1.0, 700.0, -120.0, 140.0, roll()))),
        FacePath("two_faces", 1, 40, 179, (
            (0.2, 1400.0, 420.0, 120.0, roll()), (0.6, 500.0, 460.0, 180.0, roll()),
            (1.0, 250.0, 380.0, 100.0, roll()))),
    ], 2.0)
    # group_selfie's six faces, small (40-60 px) in a 640x480 frame, drifting, rolling a
    # little, one entering late and one leaving early: the crowd case.
    paths = []
    for k in range(6):
        x0, y0 = 80 + 95 * k, float(rng.uniform(120, 360))
        dx, dy = float(rng.uniform(-60, 60)), float(rng.uniform(-40, 40))
        size0, size1 = float(rng.uniform(40, 60)), float(rng.uniform(40, 60))
        r = float(rng.uniform(-15, 15))
        start, end = (30, 159) if k == 5 else (0, 159)
        if k == 0:  # leaves through the left edge
            keys = ((0.0, x0, y0, size0, 0.0), (1.0, -80.0, y0 + dy, size1, r))
        else:
            keys = ((0.0, x0, y0, size0, 0.0), (1.0, x0 + dx, y0 + dy, size1, r))
        paths.append(FacePath("group_selfie", k, start, end, keys))
    clips["gt_crowd_small"] = ((640, 480), 160, paths, 0.5)
    return clips


def make_all(out_dir: Path = CACHE, seed: int = 32, force: bool = False) -> list[tuple[Path, Path]]:
    """Every clip of recipes(), made unless its files exist for this VERSION and seed."""
    made = []
    for i, (name, (size, n, paths, pan)) in enumerate(recipes(np.random.default_rng(seed)).items()):
        video, labels = out_dir / f"{name}.mp4", out_dir / f"{name}.json"
        if not force and video.exists() and labels.exists():
            meta = json.loads(labels.read_text())
            if meta.get("version") == VERSION and meta.get("seed") == seed + i:
                made.append((video, labels))
                continue
        made.append(render(name, size, n, paths, seed + i, out_dir, pan))
    return made


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE, help="cache folder (never committed)")
    parser.add_argument("--seed", type=int, default=32)
    parser.add_argument("--force", action="store_true", help="remake clips that exist")
    args = parser.parse_args(argv)
    for video, labels in make_all(args.out, args.seed, args.force):
        meta = json.loads(labels.read_text())
        counts = [len(f["faces"]) for f in meta["per_frame"]]
        print(f"{video} ({meta['width']}x{meta['height']}, {meta['frames']} frames, "
              f"{len(meta['faces'])} faces, {min(counts)}-{max(counts)} a frame); truth {labels}")


if __name__ == "__main__":
    main()
