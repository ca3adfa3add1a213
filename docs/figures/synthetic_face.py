"""Draw the synthetic face used for the figures in docs/ (no photo of a real person).

    python docs/figures/synthetic_face.py docs/figures/synthetic_face.png

A smiling cartoon face in gray, shaded and blurred enough that OpenCV's Haar cascade finds
it, on a plain background: a stand-in for a FER2013 image.
"""

import sys

import cv2
import numpy as np


def synthetic_face(size=240):
    s = size / 240.0
    p = lambda *v: tuple(int(round(c * s)) for c in v)  # noqa: E731  (coordinates at 240 px)
    img = np.full((size, size), 70, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (img + 40 * xx / size).astype(np.uint8)                     # a soft background ramp
    cv2.ellipse(img, p(120, 125), p(78, 100), 0, 0, 360, 175, -1)      # face
    cv2.ellipse(img, p(120, 40), p(80, 40), 0, 180, 360, 40, -1)       # hair
    cv2.rectangle(img, p(42, 38), p(198, 62), 40, -1)
    for x in (88, 152):
        cv2.ellipse(img, p(x, 102), p(18, 5), 0, 180, 360, 60, p(4)[0])  # eyebrows
        cv2.ellipse(img, p(x, 118), p(16, 9), 0, 0, 360, 235, -1)       # eye whites
        cv2.circle(img, p(x, 118), p(7)[0], 30, -1)                     # irises
    cv2.line(img, p(120, 122), p(112, 160), 130, p(3)[0])              # nose ridge
    cv2.ellipse(img, p(120, 162), p(12, 5), 0, 0, 180, 120, p(3)[0])   # nostrils
    cv2.ellipse(img, p(120, 182), p(36, 20), 0, 10, 170, 60, p(6)[0])  # a smile
    cv2.ellipse(img, p(120, 150), p(78, 70), 0, 20, 160, 150, p(8)[0]) # cheek shading
    return cv2.GaussianBlur(img, (0, 0), 2.0 * s)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "synthetic_face.png"
    canvas = np.full((320, 320), 90, np.uint8)
    canvas[40:280, 40:280] = synthetic_face()
    if not cv2.imwrite(out, canvas):
        raise SystemExit(f"could not write {out}")
    print(f"wrote {out}")
