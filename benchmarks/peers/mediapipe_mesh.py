"""MediaPipe face mesh on a clip, in tracking mode, as a video application runs it; one JSON
object on stdout (see benchmarks/peers/__init__.py). Runs only in MediaPipe's own venv:

    ../mpvenv/bin/python benchmarks/peers/mediapipe_mesh.py CLIP

Tracking mode (static_image_mode=False): BlazeFace runs until it finds faces, then each
face's 468 points place its crop in the next frame, and the detector runs again only when
fewer than max_num_faces faces are tracked or a track's presence score falls. A face's box
is its points' extents in frame pixels.
"""

import json
import sys
import time

START = time.perf_counter()

import cv2  # noqa: E402
import mediapipe as mp  # noqa: E402


def main(path: str) -> None:
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=10,
                                           refine_landmarks=False,
                                           min_detection_confidence=0.5,
                                           min_tracking_confidence=0.5)
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise SystemExit(f"could not open {path}")
    startup = time.perf_counter() - START
    frames = []
    loop_start = time.perf_counter()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        h, w = image.shape[:2]
        result = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        boxes = []
        for face in result.multi_face_landmarks or []:
            xs = [p.x * w for p in face.landmark]
            ys = [p.y * h for p in face.landmark]
            boxes.append([round(min(xs), 1), round(min(ys), 1),
                          round(max(xs) - min(xs), 1), round(max(ys) - min(ys), 1)])
        frames.append(boxes)
    loop = time.perf_counter() - loop_start
    capture.release()
    mesh.close()
    print(json.dumps({"system": "mediapipe face mesh", "version": mp.__version__,
                      "frames": len(frames), "startup_seconds": round(startup, 3),
                      "loop_seconds": round(loop, 3),
                      "frames_per_second": round(len(frames) / loop, 2) if loop else None,
                      "boxes": frames}))


if __name__ == "__main__":
    main(sys.argv[1])
