"""MediaPipe's 68 points and head pose for every face the project's photo detector finds in
the shared media: the reference benchmarks.landmarks measures the landmark model and the
Haar parts against.

    ../mpvenv/bin/python -m benchmarks.landmark_reference \\
        --json benchmarks/results/landmark_reference.json

Runs in MediaPipe's own venv (mediapipe 0.10.21 is no dependency of the project's), like
benchmarks.teacher_resolution. The faces are boxed by emotion.video.pipeline.photo_detectors()
(cv2 and NumPy only, so it imports here) on the gray image of every shared photo, and of
every 15th frame of every shared clip. Each photo is also measured mirrored, with each box
mirrored with it (not detected again), so that the mirror test compares one face region and
its exact mirror image, not two detections.

Each face is meshed at full resolution on its own region, as teacher_resolution's
region_faces does (the whole-photo mesh's short-range detector misses faces in group
photos): the box grown to twice its side, scaled so that the face is 256 px wide, and the
mesh nearest the box centre kept. Faces under MIN_FACE_PX and faces without a mesh are
skipped and counted.

Output (JSON, written atomically): per face its source, frame (0 for a photo), mirrored,
box (x, y, w, h), points (68 x 2, image pixels, continuous coordinates) and pose (yaw,
pitch, roll in degrees, emotion.face.pose's conventions, from
emotion.training.landmark_teacher's fit).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

from benchmarks import write_json
from benchmarks.teacher_resolution import MIN_FACE_PX, machine

MEDIA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                     "media")
CLIP_EVERY = 15   # every 15th frame of a clip: half a second apart, faces that have moved
REGION_PX = 256   # the face's width in the meshed region (the mesh samples it at 192 px)


def mesh_in_box(mesh, bgr: np.ndarray, box) -> np.ndarray | None:
    """MediaPipe's (68, 3) iBUG points of the face in `box`, in image pixels, or None."""
    import cv2

    from emotion.training import landmark_teacher as teacher

    x, y, bw, bh = (float(v) for v in box)
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = int(max(0, cx - bw)), int(max(0, cy - bh))
    region = bgr[y0:int(cy + bh), x0:int(cx + bw)]
    zoom = REGION_PX / bw
    big = cv2.resize(region, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    meshes = teacher.mesh_points(mesh.process(cv2.cvtColor(big, cv2.COLOR_BGR2RGB)),
                                 big.shape[:2])
    if not meshes:
        return None
    rh, rw = big.shape[:2]
    faces = [(m * (rw, rh, rw))[list(teacher.MP_TO_IBUG68)] / zoom + (x0, y0, 0) for m in meshes]
    # a region twice the box may hold a neighbour's face too: keep the one on this box
    return min(faces, key=lambda p: np.hypot(*(p[:, :2].mean(axis=0) - (cx, cy))))


def images(media: str):
    """(source, frame, mirrored, BGR image) of every photo, its mirror, and every
    CLIP_EVERY-th frame of every clip, in name order."""
    import cv2

    photos = sorted(glob.glob(os.path.join(media, "*.jpg")))
    clips = sorted(glob.glob(os.path.join(media, "*.mp4")))
    if not photos and not clips:
        raise FileNotFoundError(f"no photos (*.jpg) or clips (*.mp4) in {media}")
    for path in photos:
        bgr = cv2.imread(path)
        if bgr is None:
            raise FileNotFoundError(f"cannot read the photo {path}")
        yield os.path.basename(path), 0, False, bgr
    for path in clips:
        capture = cv2.VideoCapture(path)
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % CLIP_EVERY == 0:
                yield os.path.basename(path), index, False, frame
            index += 1
        capture.release()


def measure(media: str) -> dict:
    import cv2
    import mediapipe

    from emotion.training import landmark_teacher as teacher
    from emotion.video.pipeline import photo_detectors

    detector = photo_detectors()[0]
    mesh = teacher.new_mesh(max_num_faces=3)
    faces, skipped = [], {"under_min_px": 0, "no_mesh": 0}

    def add(source, frame, mirrored, bgr, box):
        row = {"source": source, "frame": frame, "mirrored": mirrored,
               "box": [int(v) for v in box]}
        if box[2] < MIN_FACE_PX:
            skipped["under_min_px"] += 1
            return
        points = mesh_in_box(mesh, bgr, box)
        if points is None:
            skipped["no_mesh"] += 1
            return
        row["points"] = np.round(points[:, :2], 2).tolist()
        row["pose"] = [round(a, 2) for a in teacher.pose_from_points(points)]
        faces.append(row)

    detected = 0
    for source, frame, _, bgr in images(media):
        boxes = detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        detected += len(boxes)
        for box in boxes:
            add(source, frame, False, bgr, box)
        if source.endswith(".jpg"):
            mirror = np.ascontiguousarray(bgr[:, ::-1])
            width = bgr.shape[1]
            for x, y, w, h in boxes:
                add(source, frame, True, mirror, (width - x - w, y, w, h))
    return {
        "date": __import__("datetime").date.today().isoformat(),
        "machine": machine(),
        "command": "../mpvenv/bin/python -m benchmarks.landmark_reference",
        "mediapipe_version": mediapipe.__version__, "opencv_version": cv2.__version__,
        "clip_every": CLIP_EVERY, "min_face_px": MIN_FACE_PX,
        "faces_detected": detected, "faces_measured": len(faces), "skipped": skipped,
        "faces": faces,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.landmark_reference",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--media", default=MEDIA, help="folder of the shared photos and clips")
    parser.add_argument("--json", help="write the reference here")
    args = parser.parse_args(argv)
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        print("error: mediapipe is not installed here: run this with MediaPipe's own venv "
              "(e.g. ../mpvenv/bin/python -m benchmarks.landmark_reference)", file=sys.stderr)
        return 2
    try:
        result = measure(args.media)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    by_source = {}
    for row in result["faces"]:
        by_source[row["source"]] = by_source.get(row["source"], 0) + 1
    for source, n in by_source.items():
        print(f"{source:24s} {n} faces (mirrors included)")
    print(f"{result['faces_measured']} faces measured; {result['faces_detected']} detected "
          f"(mirrors not counted); skipped {result['skipped']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
