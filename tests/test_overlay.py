"""Drawing: the class names blended from a patch rendered once look like the putText calls
they replace, and drawing is clipped at the frame's edges."""

import numpy as np
import pytest

from emotion.io import draw as overlay
from emotion.face.detector import FaceParts
from emotion.labels import EMOTIONS
from emotion.face.result import FaceResult


@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0])
def test_the_blended_class_names_match_drawing_them_with_put_text(scale):
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    drawn, blended = background.copy(), background.copy()
    bar_h = int(overlay.BAR_HEIGHT * scale)
    step = int((overlay.BAR_HEIGHT + overlay.BAR_GAP) * scale)
    for i, name in enumerate(EMOTIONS):
        overlay.put_text(drawn, name[:3], (50, 40 + i * step + bar_h - 1), scale=0.33 * scale)
    patch, alpha, (dx, dy) = overlay._label_column(scale)
    overlay.blend(blended, patch, alpha, 50 + dx, 40 + dy)
    difference = np.abs(drawn.astype(int) - blended.astype(int))
    assert (drawn != background).any()              # there is text to compare
    assert difference.max() <= 8                    # anti-aliasing rounds a little apart
    assert (difference > 2).mean() < 0.002


def test_faces_at_the_frame_edges_and_on_a_tiny_frame_are_drawn_clipped():
    probabilities = np.full(7, 1 / 7, np.float32)
    for size, box in [((480, 640), (600, 440, 60, 60)), ((480, 640), (-10, -10, 40, 40)),
                      ((20, 30), (0, 0, 20, 20))]:
        frame = np.zeros((*size, 3), np.uint8)
        result = FaceResult.build(1, box, probabilities, [], parts=FaceParts())
        overlay.draw_results(frame, [result], fps=30.0)
        assert frame.any()
    frame = np.zeros((100, 100, 3), np.uint8)
    patch, alpha, _ = overlay._label_column(1.0)
    overlay.blend(frame, patch, alpha, 500, 500)  # wholly outside: nothing, no error
    assert not frame.any()
