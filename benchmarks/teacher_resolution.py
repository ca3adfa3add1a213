"""Does a 48x48 face carry the head pose? The landmark teacher at 48 px against full resolution.

    ../mpvenv/bin/python -m benchmarks.teacher_resolution [--json out.json]

Runs in MediaPipe's own venv, like emotion.training.landmark_teacher. For every face of the
shared photos (single_face, two_faces, group_selfie): MediaPipe face mesh on the whole photo
at full resolution gives the reference 68 points and yaw/pitch/roll; then the face is cut out
as a face detector would box it (a square on the 68 points' bounds, grown by 15% a side as
emotion.face.detector.crop_face grows a Haar box), shrunk to 48x48 gray, and labelled by the teacher's
own 48 px pipeline (upscale 4x, pad, mesh). Faces the whole-photo mesh misses (its detector
is short-range) are found by OpenCV's cascade and meshed on their own region (region_faces).
Reported: the absolute pose differences per face
and their means, the 48 px points' error against the full-resolution ones normalised by the
inter-ocular distance (NME), and the mirror check at 48 px (mirroring the 48 px face should
negate yaw and roll and keep pitch).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

from emotion.face import ibug68
from emotion.training import landmark_teacher as teacher

MEDIA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                     "media")
PHOTOS = ("single_face.jpg", "two_faces.jpg", "group_selfie.jpg")
MARGIN = 0.15  # emotion.face.detector.crop_face's default
MIN_FACE_PX = 96  # smaller faces are compared against little more than their 48 px copy


def face_square(points: np.ndarray, shape) -> tuple[int, int, int, int] | None:
    """A square box (x, y, side, side) on the points' bounds, grown by MARGIN, inside the image."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x, y, s = int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side))
    if x < 0 or y < 0 or x + s > shape[1] or y + s > shape[0]:
        return None  # cut by the frame: a detector's crop would be padded differently
    return x, y, s, s


def machine() -> str:
    """The CPU's model name and core count (results are named by date and machine)."""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{os.cpu_count()}-vCPU {model}"


def region_faces(bgr: np.ndarray, found: list[np.ndarray]) -> list[np.ndarray]:
    """Faces the whole-photo mesh missed, each meshed on its own region at the photo's pixels.

    The legacy mesh's detector (short range) sees the photo at 128x128, so in a group photo
    it misses faces under ~150 px. OpenCV's frontal cascade boxes them; the mesh then runs on
    the box's region grown to twice its side, scaled so the face is 256 px wide (the mesh
    samples its face at 192 px, so this keeps every pixel the photo has). Faces under
    MIN_FACE_PX are left out: at that size the photo holds little more than 48 px does.
    """
    import cv2
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    mesh, faces = teacher.new_mesh(), []
    for x, y, bw, bh in cascade.detectMultiScale(gray, 1.1, 5, minSize=(MIN_FACE_PX, MIN_FACE_PX)):
        cx, cy = x + bw / 2, y + bh / 2
        if any(p[:, 0].min() < cx < p[:, 0].max() and p[:, 1].min() < cy < p[:, 1].max()
               for p in found + faces):
            continue  # already meshed
        x0, y0 = int(max(0, cx - bw)), int(max(0, cy - bh))
        region = bgr[y0:int(cy + bh), x0:int(cx + bw)]
        zoom = 256 / bw
        big = cv2.resize(region, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(big, cv2.COLOR_BGR2RGB)
        meshes = teacher.mesh_points(mesh.process(rgb), big.shape[:2])
        if meshes:
            rh, rw = big.shape[:2]
            points = (meshes[0] * (rw, rh, rw))[list(teacher.MP_TO_IBUG68)] / zoom
            faces.append(points + (x0, y0, 0))
    return faces


def measure(media: str) -> dict:
    import cv2
    full_mesh, small_mesh = teacher.new_mesh(max_num_faces=20), teacher.new_mesh()
    rows = []
    for name in PHOTOS:
        bgr = cv2.imread(os.path.join(media, name))
        if bgr is None:
            raise FileNotFoundError(f"no photo at {os.path.join(media, name)}")
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        faces = [(mesh * (w, h, w))[list(teacher.MP_TO_IBUG68)] for mesh in teacher.mesh_points(
            full_mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), (h, w))]
        faces += region_faces(bgr, faces)
        for k, points in enumerate(faces):
            box = face_square(points[:, :2], gray.shape)
            row = {"photo": name, "face": k, "box": box,
                   "full": [round(a, 2) for a in teacher.pose_from_points(points)]}
            rows.append(row)
            if box is None:
                row["skipped"] = "the face's box leaves the photo"
                continue
            x, y, s, _ = box
            face48 = cv2.resize(gray[y:y + s, x:x + s], (48, 48), interpolation=cv2.INTER_AREA)
            labelled = teacher.label_face48(small_mesh, face48)
            if labelled is None:
                row["skipped"] = "no mesh at 48 px"
                continue
            points48, pose48 = labelled
            row["48px"] = [round(float(a), 2) for a in pose48]
            row["abs_diff"] = [round(abs(a - b), 2) for a, b in zip(pose48, row["full"])]
            back = points48 * (s / 48) + (x, y)  # 48 px -> photo pixels (continuous coordinates)
            row["nme"] = round(float(np.linalg.norm(back - points[:, :2], axis=1).mean()
                                     / ibug68.interocular(points[:, :2])), 4)
            mirrored = teacher.label_face48(small_mesh, np.ascontiguousarray(face48[:, ::-1]))
            if mirrored is not None:
                my, mp_, mr = mirrored[1]
                row["mirror_48px"] = [round(float(a), 2) for a in mirrored[1]]
                row["mirror_error"] = [round(float(abs(my + pose48[0])), 2),
                                       round(float(abs(mp_ - pose48[1])), 2),
                                       round(float(abs(mr + pose48[2])), 2)]
    measured = [r for r in rows if "abs_diff" in r]
    mirrored = [r for r in rows if "mirror_error" in r]
    import mediapipe
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python -m benchmarks.teacher_resolution",
        "mediapipe_version": mediapipe.__version__,
        "faces_found_full": len(rows), "faces_measured": len(measured),
        "mean_abs_diff_yaw_pitch_roll": [
            round(float(np.mean([r["abs_diff"][i] for r in measured])), 2)
            for i in range(3)] if measured else None,
        "mean_nme": round(float(np.mean([r["nme"] for r in measured])), 4) if measured else None,
        "mirror_mean_error_yaw_pitch_roll": [
            round(float(np.mean([r["mirror_error"][i] for r in mirrored])), 2)
            for i in range(3)] if mirrored else None,
        "faces": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.teacher_resolution",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--media", default=MEDIA, help="folder of the shared photos")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        print("error: mediapipe is not installed here: run this with MediaPipe's own venv "
              "(e.g. ../mpvenv/bin/python -m benchmarks.teacher_resolution)", file=sys.stderr)
        return 2
    try:
        result = measure(args.media)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in result["faces"]:
        print(f"{row['photo']:18s} face {row['face']}: full {row['full']}  48px "
              f"{row.get('48px', row.get('skipped'))}  |diff| {row.get('abs_diff', '-')}  "
              f"NME {row.get('nme', '-')}  mirror error {row.get('mirror_error', '-')}")
    print(f"{result['faces_measured']} of {result['faces_found_full']} faces measured; "
          f"mean |48 px - full| yaw/pitch/roll {result['mean_abs_diff_yaw_pitch_roll']} degrees, "
          f"NME {result['mean_nme']}; "
          f"mirror at 48 px: {result['mirror_mean_error_yaw_pitch_roll']}")
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
