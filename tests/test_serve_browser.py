"""`emotion serve` in a real browser: headless Chromium, its fake camera playing a clip of
woman_talking.mp4, the page served by uvicorn on a free loopback port. Within a minute the
page must hold a face with an emotion in window.emotionLatest and have drawn on its canvas.
The screenshot goes to the test's folder (and, with EMOTION_SCREENSHOT=docs/serve.png, to the
README's picture)."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import MEDIA, REPO

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CLIP = MEDIA / "woman_talking.mp4"

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                       reason=f"needs Chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER}): "
                              f"apt-get install chromium chromium-driver"),
    pytest.mark.skipif(not CLIP.is_file(), reason=f"shared test media not found: {CLIP}"),
]
selenium = pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[dev]')")


def write_y4m(path: Path, source: Path, seconds: float = 3.0, width: int = 320) -> None:
    """The first seconds of `source` as a Y4M file (raw 4:2:0 frames, what Chromium's fake
    camera reads), scaled to `width` (even sizes: 4:2:0 halves both)."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    with open(path, "wb") as out:
        for i in range(int(seconds * fps)):
            ok, frame = capture.read()
            if not ok:
                break
            h = int(round(frame.shape[0] * width / frame.shape[1] / 2)) * 2
            frame = cv2.resize(frame, (width, h), interpolation=cv2.INTER_AREA)
            if i == 0:
                out.write(f"YUV4MPEG2 W{width} H{h} F30:1 Ip A1:1 C420\n".encode())
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    capture.release()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    import uvicorn

    from emotion import pipeline
    from emotion.serve.app import create_app

    app = create_app(classifier=pipeline.load_classifier("compact"))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{config.port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_page_shows_a_face_with_an_emotion_from_the_fake_camera(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    clip = tmp_path / "clip.y4m"
    write_y4m(clip, CLIP)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}",
                 "--window-size=1280,900"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(server)
        latest, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            latest = driver.execute_script("return window.emotionLatest || null")
            if latest and any(face.get("emotion") for face in latest.get("faces", [])):
                break
            time.sleep(0.25)
        status = driver.find_element("id", "live-status").text
        assert latest and latest["faces"], f"no face within 60 s; page says: {status!r}"
        face = latest["faces"][0]
        assert face["emotion"] in ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                   "neutral") and face["track_id"] >= 1
        time.sleep(0.5)  # a few frames painted with the boxes
        # The canvas holds the camera's picture: many distinct pixel values, not one colour.
        spread = driver.execute_script("""
            const c = document.getElementById('live-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lo = 255, hi = 0;
            for (let i = 0; i < d.length; i += 4 * 97) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
            return hi - lo;""")
        assert spread > 50, f"the canvas is blank (pixel spread {spread})"
        shot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(shot))
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
    finally:
        driver.quit()
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
    image = cv2.imread(str(shot))
    assert image is not None and np.ptp(image) > 50
    # EMOTION_SCREENSHOT=docs/serve.png refreshes the README's picture; by default the test
    # leaves the working tree as it found it.
    if os.environ.get("EMOTION_SCREENSHOT"):
        shutil.copy(shot, REPO / os.environ["EMOTION_SCREENSHOT"])
