"""Intensity thresholds and the onset/apex/offset state machine on synthetic curves."""

import numpy as np
import pytest

from emotion.face import expression as dynamics
from emotion.face.expression import APEX, NEUTRAL, OFFSET, ONSET, PhaseTracker
from emotion.labels import EMOTIONS

HAPPY, SURPRISE, NEUTRAL_INDEX = EMOTIONS.index("happy"), EMOTIONS.index("surprise"), 6


def distribution(p_expression, index=HAPPY):
    """A (7,) distribution: `p_expression` on one class, the rest mostly on neutral."""
    probs = np.full(7, 0.01)
    probs[index] = p_expression
    probs[NEUTRAL_INDEX] = 1.0 - p_expression - 0.05
    return probs


@pytest.mark.parametrize("p, level", [(0.2, "low"), (0.449, "low"), (0.45, "medium"),
                                      (0.69, "medium"), (0.7, "high"), (1.0, "high")])
def test_intensity_thresholds(p, level):
    assert dynamics.intensity(p) == level


def run_curve(curve, fps=30.0, index=HAPPY):
    tracker = PhaseTracker()
    return [tracker.update(distribution(p, index), i / fps) for i, p in enumerate(curve)]


def test_rise_hold_fall_gives_onset_apex_offset():
    fps = 30
    rest, ramp, hold = [0.05] * 15, np.linspace(0.05, 0.9, fps), [0.9] * fps
    curve = np.concatenate([rest, ramp, hold, ramp[::-1], rest])
    phases = run_curve(curve, fps)
    segments = [phases[:15], phases[15:45], phases[45:75], phases[75:105], phases[105:]]
    assert set(segments[0]) == {NEUTRAL}
    # The first ramp steps are below ACTIVE_LEVEL (0.2): still at rest, then onset.
    assert segments[1][-20:] == [ONSET] * 20
    assert set(segments[2]) == {APEX}
    assert segments[3][1:21] == [OFFSET] * 20  # the fall's first sample still equals the hold
    assert segments[4] == [NEUTRAL] * 15
    # The order of phases over the whole curve is exactly neutral, onset, apex, offset, neutral.
    changes = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert changes == [NEUTRAL, ONSET, APEX, OFFSET, NEUTRAL]


def test_same_curve_same_phases_at_another_frame_rate():
    # Thresholds are in probability per second: 15 fps sees the same course as 30 fps.
    for fps in (15, 60):
        ramp = np.linspace(0.05, 0.9, fps)
        curve = np.concatenate([[0.05] * 5, ramp, [0.9] * fps, ramp[::-1], [0.05] * 5])
        phases = run_curve(curve, fps)
        changes = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
        assert changes == [NEUTRAL, ONSET, APEX, OFFSET, NEUTRAL], fps


def test_slow_drift_and_noise_stay_neutral():
    rng = np.random.default_rng(0)
    curve = 0.1 + 0.03 * rng.standard_normal(90).cumsum() / 10  # small smoothed wobble
    assert set(run_curve(np.clip(curve, 0, 0.25), fps=30)) == {NEUTRAL}


def test_pause_mid_rise_keeps_onset():
    curve = np.concatenate([np.linspace(0.05, 0.4, 15), [0.4] * 10])  # stops below apex
    phases = run_curve(curve)
    assert phases[-1] == ONSET


def test_follows_the_dominant_non_neutral_emotion():
    tracker = PhaseTracker()
    tracker.update(distribution(0.8, HAPPY), 0.0)
    assert tracker.emotion == "happy"
    # Neutral dominates overall, but the followed expression is still the top non-neutral one.
    probs = np.full(7, 0.02)
    probs[SURPRISE], probs[NEUTRAL_INDEX] = 0.1, 0.8
    tracker.update(probs, 1 / 30)
    assert tracker.emotion == "surprise"
    assert dynamics.dominant(probs) == ("neutral", pytest.approx(0.8))
