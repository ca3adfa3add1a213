"""How strong an expression is (intensity) and where it is in its course (temporal phase).

Both read the *smoothed* probabilities of one track (see `emotion.video.track`), never the raw
per-frame output: the CNN's output flickers by +-0.1 from frame to frame, which would make
every slope look like an onset.

Intensity: the smoothed probability `p` of the dominant emotion.

    p <  0.45          low     (with 7 classes, chance is 0.14; below ~0.45 the model is
                                hesitating between two or three classes)
    0.45 <= p < 0.70   medium
    p >= 0.70          high    (the model is clearly committed)

Phase: a small state machine over `p(t)`, the smoothed probability of the current dominant
*non-neutral* emotion (neutral is the resting state, not an expression with a course), and
its slope `dp/dt` in probability per second, so the thresholds do not depend on frame rate.

    rising:  dp/dt >= RISE_RATE and p >= ACTIVE_LEVEL    -> ONSET
    falling: dp/dt <= -FALL_RATE and an expression was
             under way (onset/apex/offset) and p >= REST_LEVEL       -> OFFSET
    flat:    p >= APEX_LEVEL                             -> APEX   (high and flat)
             p <  REST_LEVEL                             -> NEUTRAL
             in between: keep the current phase (hysteresis: a pause in the middle of a
             rise stays ONSET, a pause in the middle of a fall stays OFFSET)

An expression typically rises in 0.3-0.5 s from ~0.1 to ~0.8, i.e. 1.5-2.5 per second; the
0.5/s rate thresholds are well below that yet above the drift left by smoothing noise.
"""

from __future__ import annotations

import numpy as np

from emotion.labels import EMOTIONS

NEUTRAL_INDEX = EMOTIONS.index("neutral")

LOW, MEDIUM, HIGH = "low", "medium", "high"
MEDIUM_LEVEL = 0.45
HIGH_LEVEL = 0.70

NEUTRAL, ONSET, APEX, OFFSET = "neutral", "onset", "apex", "offset"
PHASES = (NEUTRAL, ONSET, APEX, OFFSET)
RISE_RATE = 0.5      # probability per second
FALL_RATE = 0.5      # probability per second
ACTIVE_LEVEL = 0.20  # a rise below this is noise on a resting face
APEX_LEVEL = 0.50    # "high" for the purpose of an apex
REST_LEVEL = 0.30    # below this (and not moving) the face is back at rest


def intensity(probability: float) -> str:
    """low / medium / high for the probability of the dominant emotion."""
    if probability >= HIGH_LEVEL:
        return HIGH
    if probability >= MEDIUM_LEVEL:
        return MEDIUM
    return LOW


def dominant(probabilities: np.ndarray) -> tuple[str, float]:
    """(emotion name, probability) of the most probable class."""
    index = int(np.argmax(probabilities))
    return EMOTIONS[index], float(probabilities[index])


def dominant_expression(probabilities: np.ndarray) -> int:
    """Index of the most probable class other than neutral."""
    masked = np.array(probabilities, dtype=np.float64)
    masked[NEUTRAL_INDEX] = -1.0
    return int(np.argmax(masked))


class PhaseTracker:
    """Per-track state machine: `update(probabilities, timestamp) -> phase`.

    Feed it the track's smoothed (7,) probabilities once per frame with the frame time in
    seconds. The slope is taken for the emotion that is dominant *now*, using that same
    emotion's previous value, so a switch from happy to surprise is a rise of surprise
    rather than a jump between two curves.
    """

    def __init__(self, rise_rate: float = RISE_RATE, fall_rate: float = FALL_RATE,
                 active_level: float = ACTIVE_LEVEL, apex_level: float = APEX_LEVEL,
                 rest_level: float = REST_LEVEL):
        self.rise_rate = rise_rate
        self.fall_rate = fall_rate
        self.active_level = active_level
        self.apex_level = apex_level
        self.rest_level = rest_level
        self.phase = NEUTRAL
        self.emotion: str | None = None  # the non-neutral emotion being followed
        self._previous: np.ndarray | None = None
        self._previous_time: float | None = None

    def update(self, probabilities: np.ndarray, timestamp: float) -> str:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        index = dominant_expression(probabilities)
        p = probabilities[index]
        slope = 0.0
        if self._previous is not None and timestamp > self._previous_time:
            slope = (p - self._previous[index]) / (timestamp - self._previous_time)
        self._previous, self._previous_time = probabilities, timestamp
        self.emotion = EMOTIONS[index]

        expression_under_way = self.phase in (ONSET, APEX, OFFSET)
        if slope >= self.rise_rate and p >= self.active_level:
            self.phase = ONSET
        elif slope <= -self.fall_rate and expression_under_way and p >= self.rest_level:
            self.phase = OFFSET
        elif p >= self.apex_level and abs(slope) < self.rise_rate:
            self.phase = APEX
        elif p < self.rest_level:
            self.phase = NEUTRAL
        # otherwise: hysteresis, keep the current phase
        return self.phase
