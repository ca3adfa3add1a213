"""Where the face detector puts its box, in units of a face's landmarks: the constants of
emotion.face.landmarks.frame_box, measured on FER2013's faces with the teacher's points.

    python -m benchmarks.frame_box [--faces 3000] [--labels data/landmarks/fer2013_mediapipe.npz]

A followed face's next crop is placed from its points, and it must be framed as the photo
path frames a face (the detector's box grown by the classifier's margin): the same face then
gives the same crop, points, pose and emotion through `predict` and `video`, and the box a
user sees is the detector's kind of box. So the constants come from the detector itself: on
FER2013 Training faces (random, seeded), each 48x48 face padded by a quarter and upscaled 4x
as the teacher saw it (emotion/training/landmark_teacher.py), the photo detector's box
(FaceDetector(PHOTO_CONFIG)) where it finds exactly one face, against the teacher's 68 points
of that face: the box's side over the points' spread (the root mean square distance of the
points from their mean) and the box centre's offset from the points' mean, in spreads. The
medians are printed with their spread (median absolute deviation). The faces are FER2013's,
not the shared photos and clips the pipeline is scored on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "data" / "landmarks" / "fer2013_mediapipe.npz"
DATA = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
SCALE, PAD = 4, 12  # the teacher's view of a 48x48 face: padded by 12 px, upscaled 4x


def measure(faces: int = 3000, labels=LABELS, data=DATA, seed: int = 0) -> dict:
    """{"side", "offset_x", "offset_y"} medians, their MADs and the faces used."""
    from emotion.face.detector import PHOTO_CONFIG, FaceDetector
    from emotion.training.data import load_fer2013

    dataset = load_fer2013(str(data))
    images, _ = dataset.split("Training")
    rows = dataset.rows["Training"]
    with np.load(labels) as f:
        found, points = f["found"], f["landmarks"]
    detector = FaceDetector(PHOTO_CONFIG)
    picked = np.random.default_rng(seed).choice(len(images), min(faces, len(images)), replace=False)
    measured = []
    for i in picked:
        if not found[rows[i]]:
            continue
        face = np.asarray(images[i]).reshape(48, 48).astype(np.uint8)
        view = cv2.resize(cv2.copyMakeBorder(face, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE),
                          None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
        boxes = detector.detect(view)
        if len(boxes) != 1:
            continue
        x, y, w, h = boxes[0]
        p = (points[rows[i]].astype(np.float64) + PAD) * SCALE
        mean = p.mean(axis=0)
        spread = np.sqrt(((p - mean) ** 2).sum(axis=1).mean())
        measured.append([w / spread, (x + w / 2 - mean[0]) / spread,
                         (y + h / 2 - mean[1]) / spread])
    m = np.array(measured)
    median = np.median(m, axis=0)
    mad = np.median(np.abs(m - median), axis=0)
    return {"faces": len(m), "of": len(picked), "side": float(median[0]),
            "offset_x": float(median[1]), "offset_y": float(median[2]),
            "mad": [float(v) for v in mad]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    r = measure(args.faces, args.labels, args.data)
    print(f"{r['faces']} of {r['of']} faces: side {r['side']:.3f} spreads (MAD {r['mad'][0]:.3f}), "
          f"centre offset ({r['offset_x']:.3f}, {r['offset_y']:.3f}) spreads "
          f"(MAD {r['mad'][1]:.3f}, {r['mad'][2]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
