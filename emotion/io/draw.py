"""Drawing the results on a frame: box, ID and label, probability bars, an emoji, the FPS,
and on request (--show-parts) the face parts and small head-pose axes.

Everything is drawn with a few cv2 primitives straight onto the frame (no image assets),
except the bars' class names, the same for every face: rendered once and blended in
(_label_column). Drawing one face costs well under a millisecond, which matters because it
sits in the per-frame budget next to detection and the CNN.

Colours are BGR, as everywhere in OpenCV.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from emotion.labels import EMOTIONS

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK = (255, 255, 255), (0, 0, 0)

# One colour per emotion, used for the box, the bar of that emotion and the emoji's face.
COLORS = {
    "angry": (40, 40, 220),     # red
    "disgust": (60, 160, 60),   # green
    "fear": (200, 120, 160),    # violet
    "happy": (40, 210, 250),    # yellow
    "sad": (200, 130, 40),      # blue
    "surprise": (40, 160, 250),  # orange
    "neutral": (190, 190, 190),  # grey
}


def put_text(frame, text, origin, scale=0.5, color=WHITE, thickness=1):
    """Text with a dark outline, readable on any background (two putText calls)."""
    cv2.putText(frame, text, origin, FONT, scale, BLACK, thickness + 2, cv2.LINE_AA)
    cv2.putText(frame, text, origin, FONT, scale, color, thickness, cv2.LINE_AA)


# ---------------------------------------------------------------------------------------
# Emoji: a face drawn in a square of side `size` whose top-left corner is (x, y).
# Each emotion changes only brows, eyes and mouth, so the shared parts are drawn once.
# ---------------------------------------------------------------------------------------

def _arc(frame, center, axes, start, end, thickness):
    cv2.ellipse(frame, center, axes, 0, start, end, BLACK, thickness, cv2.LINE_AA)


def draw_emoji(frame: np.ndarray, emotion: str, x: int, y: int, size: int) -> None:
    r = size // 2
    cx, cy = x + r, y + r
    t = max(1, size // 16)                  # line thickness that scales with the emoji
    eye_dx, eye_y = size // 5, cy - size // 8  # eyes: left/right offset and height
    eye_r = max(1, size // 14)
    cv2.circle(frame, (cx, cy), r, COLORS.get(emotion, COLORS["neutral"]), -1, cv2.LINE_AA)
    cv2.circle(frame, (cx, cy), r, BLACK, t, cv2.LINE_AA)

    def eyes(radius=eye_r, filled=True):
        for sx in (-1, 1):
            cv2.circle(frame, (cx + sx * eye_dx, eye_y), radius, BLACK, -1 if filled else t,
                       cv2.LINE_AA)

    def brows(inner_dy, outer_dy):
        """Two brow lines; a positive dy moves that end down (inner down = angry V)."""
        base = eye_y - size // 7
        for sx in (-1, 1):
            inner = (cx + sx * size // 12, base + inner_dy)
            outer = (cx + sx * (eye_dx + size // 8), base + outer_dy)
            cv2.line(frame, inner, outer, BLACK, t, cv2.LINE_AA)

    mouth_y = cy + size // 5
    if emotion == "happy":
        eyes()
        _arc(frame, (cx, mouth_y - size // 12), (size // 4, size // 6), 0, 180, t)  # smile
    elif emotion == "sad":
        eyes()
        _arc(frame, (cx, mouth_y + size // 10), (size // 5, size // 9), 180, 360, t)  # frown
        brows(inner_dy=-size // 14, outer_dy=0)                                     # raised inside
        cv2.circle(frame, (cx + eye_dx, eye_y + size // 7), max(1, size // 18), (230, 160, 60),
                   -1, cv2.LINE_AA)                                                 # a tear
    elif emotion == "angry":
        eyes()
        brows(inner_dy=size // 14, outer_dy=-size // 14)                            # V brows
        _arc(frame, (cx, mouth_y + size // 12), (size // 6, size // 14), 180, 360, t)
    elif emotion == "surprise":
        eyes(radius=eye_r + 1, filled=False)                                        # wide eyes
        brows(inner_dy=-size // 16, outer_dy=-size // 16)                           # raised
        cv2.ellipse(frame, (cx, mouth_y + size // 20), (size // 9, size // 7), 0, 0, 360,
                    BLACK, -1, cv2.LINE_AA)                                         # open "O"
    elif emotion == "fear":
        eyes(radius=eye_r + 1, filled=False)
        brows(inner_dy=-size // 10, outer_dy=0)                                     # worried
        w, h = size // 4, size // 16
        teeth = np.array([(cx - w + i * w // 3, mouth_y + (h if i % 2 else -h)) for i in range(7)],
                         np.int32)
        cv2.polylines(frame, [teeth], False, BLACK, t, cv2.LINE_AA)                 # wavering
    elif emotion == "disgust":
        eyes()
        brows(inner_dy=size // 20, outer_dy=0)
        w = size // 4
        wave = np.array([(cx - w, mouth_y), (cx - w // 3, mouth_y - size // 12),
                         (cx + w // 3, mouth_y + size // 20), (cx + w, mouth_y - size // 14)],
                        np.int32)
        cv2.polylines(frame, [wave], False, BLACK, t, cv2.LINE_AA)                  # sneer
    else:  # neutral, or an unknown label
        eyes()
        cv2.line(frame, (cx - size // 5, mouth_y), (cx + size // 5, mouth_y), BLACK, t,
                 cv2.LINE_AA)


# ---------------------------------------------------------------------------------------
# Per-face annotations and the FPS counter.
# ---------------------------------------------------------------------------------------

BAR_WIDTH, BAR_HEIGHT, BAR_GAP = 70, 9, 2
LABEL_WIDTH = 30  # room for the 3-letter class names left of the bars


def ui_scale(frame: np.ndarray) -> float:
    """Size of text and bars relative to a ~640x480 frame, so a 12-megapixel photo's labels
    are not specks; never below 1 (small frames keep the minimum readable size)."""
    return max(1.0, min(frame.shape[:2]) / 720.0)


def draw_bars(frame, probabilities, x, y, highlight: str | None = None, scale: float = 1.0):
    """Seven horizontal bars, one per class, top-left corner at (x, y)."""
    bar_w, bar_h = int(BAR_WIDTH * scale), int(BAR_HEIGHT * scale)
    step, left = int((BAR_HEIGHT + BAR_GAP) * scale), x + int(LABEL_WIDTH * scale)
    patch, alpha, (dx, dy) = _label_column(scale)
    blend(frame, patch, alpha, x + dx, y + dy)
    for i, (name, p) in enumerate(zip(EMOTIONS, probabilities)):
        top = y + i * step
        cv2.rectangle(frame, (left, top), (left + bar_w, top + bar_h), BLACK, -1)
        filled = int(round(float(p) * bar_w))
        if filled > 0:
            color = COLORS[name] if name == highlight else (150, 150, 150)
            cv2.rectangle(frame, (left, top), (left + filled, top + bar_h), color, -1)


@functools.lru_cache(maxsize=16)
def _label_column(scale: float):
    """The bars' seven class names, rendered once per scale as (BGR patch, alpha (H, W, 1),
    offset of the patch from the bars' corner). The same for every face and frame, and
    blending it costs microseconds where its 14 anti-aliased putText calls cost ~0.3 ms a
    face (measured): a few milliseconds a frame with a group in view.

    The alpha is the outline's coverage, so blending gives what drawing the outlined text
    onto the frame gives: the outline's soft edge over the frame, the text inside it."""
    bar_h, step = int(BAR_HEIGHT * scale), int((BAR_HEIGHT + BAR_GAP) * scale)
    margin = 2 + int(scale)  # room for the outline and the glyphs' overhang
    height, width = len(EMOTIONS) * step + 2 * margin, int(LABEL_WIDTH * scale) + 2 * margin
    patch = np.zeros((height, width, 3), np.uint8)
    coverage = np.zeros((height, width), np.uint8)
    for i, name in enumerate(EMOTIONS):
        origin = (margin, margin + i * step + bar_h - 1)
        put_text(patch, name[:3], origin, scale=0.33 * scale)
        cv2.putText(coverage, name[:3], origin, FONT, 0.33 * scale, 255, 3, cv2.LINE_AA)
    return patch, (coverage / np.float32(255))[:, :, None], (-margin, -margin)


def blend(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """frame = patch * alpha + frame * (1 - alpha) where the patch, top-left at (x, y),
    overlaps the frame (clipped at its edges)."""
    H, W = frame.shape[:2]
    h, w = patch.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x0 >= x1 or y0 >= y1:
        return
    roi = frame[y0:y1, x0:x1]
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    mixed = patch[y0 - y:y1 - y, x0 - x:x1 - x] * a + roi * (1 - a)
    roi[:] = (mixed + 0.5).astype(np.uint8)


def draw_face(frame: np.ndarray, result, scale: float | None = None) -> None:
    """Box, "#id emotion p intensity phase", emoji, and the 7 bars beside the box.

    `result` is anything with track_id, box, probabilities, emotion, intensity, phase
    (an `emotion.face.result.FaceResult`).
    """
    H, W = frame.shape[:2]
    scale = scale or ui_scale(frame)
    x, y, w, h = result.box
    color = COLORS.get(result.emotion, WHITE)
    cv2.rectangle(frame, (x, y), (x + w, y + h), color, max(2, int(2 * scale)))

    p = float(np.max(result.probabilities))
    label = f"#{result.track_id} {result.emotion} {p:.2f} {result.intensity}"
    if result.phase:
        label += f" {result.phase}"
    gap = int(6 * scale)
    line = int(16 * scale)
    text_y = y - gap if y - gap > line else y + h + line  # above the box, or below at the top
    put_text(frame, label, (x, text_y), scale=0.5 * scale, color=color,
             thickness=max(1, int(scale)))

    # A column beside the box (right if it fits, else left): the emoji, then the bars.
    emoji = int(max(24, min(48, w // 3)) * scale)
    column_width = int((LABEL_WIDTH + BAR_WIDTH) * scale)
    column_height = emoji + gap + int(len(EMOTIONS) * (BAR_HEIGHT + BAR_GAP) * scale)
    cx = x + w + gap if x + w + gap + column_width <= W else max(0, x - column_width - gap)
    cy = min(max(0, y), max(0, H - column_height))
    draw_emoji(frame, result.emotion, cx, cy, emoji)
    draw_bars(frame, result.probabilities, cx, cy + emoji + gap, result.emotion, scale)


def draw_fps(frame: np.ndarray, fps: float) -> None:
    scale = ui_scale(frame)
    put_text(frame, f"{fps:5.1f} FPS", (int(8 * scale), int(22 * scale)), scale=0.6 * scale,
             thickness=max(1, int(scale)))


PART_COLORS = {"eye": (80, 220, 80), "eyebrow": (220, 200, 60), "mouth": (80, 80, 230)}


def draw_parts(frame: np.ndarray, result, scale: float = 1.0) -> None:
    """The eyes, eyebrows and mouth as thin boxes, and pose axes at the eye midpoint.

    The axes are those of the head turned by (yaw, pitch, roll) and projected flat, in the
    conventions of emotion.face.pose: red points right across the face, green up it, blue out
    of the face toward the camera (a dot when frontal, a line toward the turn). An unknown
    angle is drawn as 0 and the label says "?" for it.
    """
    t = max(1, int(scale))
    parts = result.parts
    for name, boxes in (("eye", parts.eyes), ("eyebrow", parts.eyebrows),
                        ("mouth", [parts.mouth])):
        for b in boxes:
            if b is not None:
                x, y, w, h = (int(v) for v in b)
                cv2.rectangle(frame, (x, y), (x + w, y + h), PART_COLORS[name], t)
    pose = result.pose
    x, y, w, h = result.box
    if len(parts.eyes) == 2:
        (a, b) = parts.eyes
        cx, cy = (a[0] + a[2] / 2 + b[0] + b[2] / 2) / 2, (a[1] + a[3] / 2 + b[1] + b[3] / 2) / 2
    else:
        cx, cy = x + w / 2, y + 0.4 * h
    yaw, pitch, roll = (math.radians(v or 0.0) for v in (pose.yaw, pose.pitch, pose.roll))
    # Rotation = roll (about the view axis) * pitch (about x) * yaw (about y), in image
    # axes (x right, y down, z away from the camera): yaw > 0 turns the nose (-z) toward +x,
    # pitch > 0 toward -y (up).
    cr, sr, cp, sp, cyw, syw = (math.cos(roll), math.sin(roll), math.cos(pitch),
                                math.sin(pitch), math.cos(yaw), math.sin(yaw))
    R = (np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
         @ np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
         @ np.array([[cyw, 0, -syw], [0, 1, 0], [syw, 0, cyw]]))
    length = 0.25 * w
    for axis, color in (((1, 0, 0), (40, 40, 230)), ((0, -1, 0), (40, 200, 40)),
                        ((0, 0, -1), (230, 120, 40))):
        dx, dy, _ = R @ np.array(axis, float)
        cv2.arrowedLine(frame, (int(cx), int(cy)), (int(cx + length * dx), int(cy + length * dy)),
                        color, t, cv2.LINE_AA, tipLength=0.2)
    text = " ".join(f"{name[0]}{'?' if v is None else f'{v:+.0f}'}" for name, v in
                    (("yaw", pose.yaw), ("pitch", pose.pitch), ("roll", pose.roll)))
    put_text(frame, text, (x, y + h + int(14 * scale)), scale=0.4 * scale)


def draw_results(frame: np.ndarray, results, fps: float | None = None,
                 show_parts: bool = False) -> np.ndarray:
    """Annotate `frame` in place (and return it) with every face and, if given, the FPS;
    `show_parts` adds each face's parts and pose axes (draw_parts)."""
    scale = ui_scale(frame)
    for result in results:
        draw_face(frame, result, scale)
        if show_parts:
            draw_parts(frame, result, scale)
    if fps is not None:
        draw_fps(frame, fps)
    return frame
