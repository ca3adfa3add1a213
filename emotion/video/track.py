"""Give each face a stable ID across video frames, and smooth its box, probabilities and pose.

Matching is greedy, which is enough for the handful of faces a webcam sees:

1. every (track, detection) pair is scored by IoU, and the best pairs are taken first,
   as long as their IoU is at least `min_iou`;
2. what is left is matched by centroid distance (normalised by the track's box size), for a
   face that moved or changed size so much between detections that the boxes barely overlap;
3. detections still unmatched start new tracks; a track that a detection misses when it
   has gone unmatched for more than `max_missed_frames` frames is dropped. IDs are never
   reused.

A new track is *tentative* until it has been matched in `min_hits` detections: only
confirmed tracks are returned, and a tentative track is dropped at the first detection that
misses it. Haar false positives (a lamp, a pattern on a jumper) rarely fire twice in the same
place, so this removes nearly all of them, for the price of reporting a face that appears
mid-stream one detection later. The faces of the stream's first `min_hits - 1` detections
are reported at once, as SORT (Bewley et al., 2016) does: there is nothing to wait for at
the start, and waiting would lose the first detection interval of every face in view (k
frames with `detect_every=k`, all of a clip shorter than that, such as a still image). IDs
are handed out when a track is first reported, so they count 1, 2, 3 without gaps.

Detecting every frame is the main cost of the pipeline, so the tracker also supports frames
without detection (`step(None)`): each track keeps its last box. The trade-off of this
"carry" is that a box lags a moving head by up to `detect_every - 1` frames (at 30 fps and
k = 2, 33 ms: invisible for a talking head, visible for a fast turn), in exchange for zero
cost and zero drift. Optical flow or template matching would follow motion between
detections but costs a few ms per face per frame and slowly drifts off the face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from emotion.face.detector import Box, FaceParts, box_center
from emotion.face.pose import HeadPose


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes, in [0, 1]."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def smoothing_weight(dt: float | None, time_constant: float, default: float) -> float:
    """Weight of a new sample in an exponential moving average, from the time since the last.

    With `alpha = 1 - exp(-dt / tau)` the average forgets at the same rate *in seconds*
    whether the loop runs at 30 fps or 5 fps; a fixed per-frame alpha would make the display
    sluggish exactly when the machine is slow. Without timestamps we use `default`.
    """
    if dt is None or dt <= 0 or time_constant <= 0:
        return default
    return 1.0 - math.exp(-dt / time_constant)


@dataclass
class Track:
    """One face followed over time."""

    track_id: int  # 0 until reported (see the module docstring), then 1, 2, 3, ...
    box: Box
    eyes: list[Box] = field(default_factory=list)
    parts: FaceParts = field(default_factory=FaceParts)  # the last parts found
    pose: HeadPose = field(default_factory=HeadPose)     # smoothed (smooth_pose)
    pose_time: float | None = None                       # timestamp of the last pose update
    probabilities: np.ndarray | None = None  # (7,) smoothed; None until first classified
    last_time: float | None = None           # timestamp of the last probability update
    frames_since_seen: int = 0               # frames since a detection matched this track
    misses: int = 0                          # detection steps in a row that missed it
    hits: int = 1                            # detections matched so far
    age: int = 1                             # frames since the track was born
    parts_age: int | None = None             # its age when its parts were last looked for
    classified_at: int | None = None         # the pipeline's frame index of its last CNN pass
    landmarks: np.ndarray | None = None      # (68, 2) frame px, found on `landmarks_box`
    landmarks_box: Box | None = None         # the box the landmarks were found in


class IoUTracker:
    """Greedy IoU + centroid-distance tracker with exponential smoothing.

    `step(detections)` once per frame: a list of boxes on a detection frame, None on a frame
    without detection. It returns the confirmed live tracks, oldest first.
    """

    def __init__(self, min_iou: float = 0.3, max_center_distance: float = 0.75,
                 max_missed_frames: int = 10, min_hits: int = 2, box_weight: float = 0.6,
                 time_constant: float = 0.2, default_weight: float = 0.5):
        self.min_iou = min_iou
        # Fallback matching radius, in units of the track box's side: 0.75 means the face
        # centre may jump three quarters of a face width between two detections.
        self.max_center_distance = max_center_distance
        self.max_missed_frames = max_missed_frames
        self.min_hits = min_hits
        # Weight of a new detection in the box average: Haar boxes jitter by a few pixels
        # from frame to frame; 0.6 removes most of it while lagging little behind motion.
        self.box_weight = box_weight
        self.time_constant = time_constant      # seconds, for the probability average
        self.default_weight = default_weight    # per update, when no timestamps are given
        self.tracks: list[Track] = []
        self.next_id = 1
        self.detections_run = 0  # detection steps so far, for the start-of-stream rule

    # -- association --------------------------------------------------------------------

    def _match(self, detections: list[Box]) -> tuple[list[tuple[int, int]], set[int]]:
        """Greedy matching; returns ([(track index, detection index)], unmatched detections)."""
        pairs = []
        free_tracks = set(range(len(self.tracks)))
        free_dets = set(range(len(detections)))

        scored = [(iou(t.box, d), ti, di) for ti, t in enumerate(self.tracks)
                  for di, d in enumerate(detections)]
        for score, ti, di in sorted(scored, reverse=True):
            if score < self.min_iou:
                break
            if ti in free_tracks and di in free_dets:
                pairs.append((ti, di))
                free_tracks.discard(ti)
                free_dets.discard(di)

        distances = []
        for ti in free_tracks:
            tx, ty = box_center(self.tracks[ti].box)
            size = math.sqrt(self.tracks[ti].box[2] * self.tracks[ti].box[3])
            for di in free_dets:
                dx, dy = box_center(detections[di])
                distances.append((math.hypot(dx - tx, dy - ty) / max(size, 1.0), ti, di))
        for dist, ti, di in sorted(distances):
            if dist > self.max_center_distance:
                break
            if ti in free_tracks and di in free_dets:
                pairs.append((ti, di))
                free_tracks.discard(ti)
                free_dets.discard(di)
        return pairs, free_dets

    def _smooth_box(self, old: Box, new: Box) -> Box:
        a = self.box_weight
        return tuple(int(round(a * n + (1 - a) * o)) for n, o in zip(new, old))

    def step(self, detections: list[Box] | None) -> list[Track]:
        """Advance one frame. `detections=None`: no detection ran, every track keeps its box."""
        for track in self.tracks:
            track.age += 1
            track.frames_since_seen += 1
        if detections is not None:
            self.detections_run += 1
            pairs, unmatched = self._match(list(detections))
            for track in self.tracks:
                track.misses += 1
            for ti, di in pairs:
                track = self.tracks[ti]
                track.box = self._smooth_box(track.box, detections[di])
                track.frames_since_seen = track.misses = 0
                track.hits += 1
            for di in sorted(unmatched):
                self.tracks.append(Track(track_id=0, box=tuple(detections[di])))
            # A tentative track that missed a detection was most likely a false positive, and
            # so was one reported at the start of the stream (hits 1) but never seen again.
            self.tracks = [t for t in self.tracks
                           if t.hits >= self.min_hits or t.frames_since_seen == 0]
            # Only a detection can tell that a face has gone: between detections a track is
            # carried however long the gap, or --detect-every K > max_missed_frames would
            # drop every face before the detector looks again.
            self.tracks = [t for t in self.tracks
                           if t.frames_since_seen <= self.max_missed_frames]
        starting = self.detections_run < self.min_hits  # the start-of-stream rule
        confirmed = [t for t in self.tracks
                     if t.hits >= self.min_hits or t.track_id or starting]
        for track in confirmed:
            if track.track_id == 0:  # IDs are handed out when first reported: 1, 2, 3
                track.track_id = self.next_id
                self.next_id += 1
        return confirmed

    # -- per-track smoothing ----------------------------------------------------------

    def smooth_probabilities(self, track: Track, probabilities: np.ndarray,
                             timestamp: float | None = None) -> np.ndarray:
        """See smooth_probabilities (the function), with this tracker's time constant."""
        return smooth_probabilities(track, probabilities, timestamp, self.time_constant,
                                    self.default_weight)

    def smooth_pose(self, track: Track, pose: HeadPose,
                    timestamp: float | None = None) -> HeadPose:
        """See smooth_pose (the function), with this tracker's time constant."""
        return smooth_pose(track, pose, timestamp, self.time_constant, self.default_weight)


def smooth_probabilities(track, probabilities: np.ndarray, timestamp: float | None,
                         time_constant: float, default_weight: float = 0.5) -> np.ndarray:
    """Fold a new (7,) probability vector into `track.probabilities` (its average, None
    before the first) and return it; `track.last_time` is the time of the last update.

    A convex combination of probability vectors still sums to 1, so the smoothed vector
    is a distribution too.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if track.probabilities is None:
        track.probabilities = probabilities.copy()
    else:
        known = timestamp is not None and track.last_time is not None
        dt = timestamp - track.last_time if known else None
        a = smoothing_weight(dt, time_constant, default_weight)
        mixed = a * probabilities + (1 - a) * track.probabilities
        track.probabilities = mixed.astype(np.float32)
    track.last_time = timestamp
    return track.probabilities


def smooth_pose(track, pose: HeadPose, timestamp: float | None, time_constant: float,
                default_weight: float = 0.5) -> HeadPose:
    """Fold a new pose into `track.pose` (`track.pose_time`: the time of the last), with
    the probabilities' time constant, and return it.

    Each angle is averaged on its own. An angle the new pose lacks (the eyes were not
    found this time) becomes unknown rather than keeping an old value: a missing part
    is reported missing, never guessed.
    """
    known = timestamp is not None and track.pose_time is not None
    dt = timestamp - track.pose_time if known else None
    a = smoothing_weight(dt, time_constant, default_weight)

    def mix(new, old):
        if new is None or old is None:
            return new
        return a * new + (1 - a) * old

    old = track.pose
    track.pose = HeadPose(yaw=mix(pose.yaw, old.yaw), pitch=mix(pose.pitch, old.pitch),
                          roll=mix(pose.roll, old.roll))
    track.pose_time = timestamp
    return track.pose
