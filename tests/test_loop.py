"""The frame loop's threads (emotion.video.loop): the reader and the writer keep every frame in
order, a live reader drops stale frames, the source's error reaches the main thread, and stop()
ends a blocked reader. What the face pipeline does with the frames is tests/test_follow.py's."""

import threading
import time

import cv2
import numpy as np
import pytest

from emotion.video.loop import FrameReader, FrameWriter
from emotion.video.sources import Frame


class CountingSource:
    """Stands in for a VideoSource: frames whose pixels say their index."""

    def __init__(self, n, delay=0.0):
        self.n, self.delay = n, delay

    def frames(self, max_frames=None):
        for i in range(self.n if max_frames is None else min(self.n, max_frames)):
            time.sleep(self.delay)
            yield Frame(i, i / 30, np.full((8, 8, 3), i, np.uint8))


def test_the_reader_gives_every_frame_once_in_order_however_slow_the_consumer():
    reader = FrameReader(CountingSource(40), depth=3)
    seen = []
    for frame in reader:
        time.sleep(0.001)
        seen.append(frame.index)
    reader.stop()
    assert seen == list(range(40)) and reader.dropped == 0


def test_a_live_reader_drops_stale_frames_and_counts_them():
    reader = FrameReader(CountingSource(30, delay=0.002), drop_stale=True)
    seen = []
    for frame in reader:
        time.sleep(0.02)  # a pipeline ten times slower than the camera
        seen.append(frame.index)
    reader.stop()
    assert seen == sorted(seen) and seen[-1] == 29  # in order, and the newest one reached
    assert reader.dropped > 0 and len(seen) + reader.dropped == 30


def test_the_reader_hands_on_the_sources_error_and_stop_ends_a_blocked_thread():
    class Broken(CountingSource):
        def frames(self, max_frames=None):
            yield from super().frames(2)
            raise OSError("camera unplugged")

    with pytest.raises(OSError, match="unplugged"):
        list(FrameReader(Broken(5)))
    reader = FrameReader(CountingSource(1000), depth=2)  # nobody reads: the thread blocks
    reader.stop()
    assert not any(t.name == "frame-reader" and t.is_alive() for t in threading.enumerate())


def test_the_writer_writes_every_frame_in_order(tmp_path):
    path = tmp_path / "numbered.avi"
    writer = FrameWriter(path, 10.0, (32, 32))
    for i in range(25):
        writer.write(np.full((32, 32, 3), i * 10, np.uint8))
    writer.close()
    capture, levels = cv2.VideoCapture(str(path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        levels.append(image.mean())
    assert len(levels) == 25
    assert np.allclose(levels, np.arange(25) * 10, atol=4)  # each frame once, in order
