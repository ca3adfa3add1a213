"""Load on `emotion serve`: 8 clients posting photos to /api/predict and 2 live sockets
sending camera frames, all at once for 30 s, on the loopback interface only.

    python -m benchmarks.serve_load [--seconds 30] [--predict-clients 8] [--live 2]
                                    [--weights compact] [--json F]

The server is a separate process (`emotion serve` on a free 127.0.0.1 port), so the
clients' threads do not share its interpreter. A predict client posts single_face.jpg
again as soon as it has its answer; a live socket sends a 640x360 JPEG frame of
woman_talking.mp4 and waits for the answer before the next, as the page does. Reported:
per-request latency p50/p95 (predict) and round trip p50/p95 (live), the answers per
second of each, and every failure: a 503 (queue full) is counted apart, anything else
(an error status, a dropped connection) fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    return round(float(np.percentile(values, q)), 1) if values else None


def live_frames(n=60, width=640) -> list[bytes]:
    capture = cv2.VideoCapture(str(MEDIA / "woman_talking.mp4"))
    frames = []
    for _ in range(n):
        ok, frame = capture.read()
        if not ok:
            break
        h = frame.shape[0] * width // frame.shape[1]
        frames.append(cv2.imencode(".jpg", cv2.resize(frame, (width, h)),
                                   [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    capture.release()
    return frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--predict-clients", type=int, default=8)
    parser.add_argument("--live", type=int, default=2)
    parser.add_argument("--weights", default="compact")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    import httpx
    from websockets.sync.client import connect

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The server's log goes to a file: a pipe nobody reads would fill and stall the server.
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen([sys.executable, "-m", "emotion", "serve", "--port", str(port),
                               "--weights", args.weights], stderr=log, text=True,
                              env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/api/health", timeout=1).json()
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the server did not start: {log.read()}")
                time.sleep(0.2)
        photo = (MEDIA / "single_face.jpg").read_bytes()
        frames = live_frames()
        stop = time.monotonic() + args.seconds
        predict_ms, live_ms, refused, failures, live_frames_done = [], [], [0], [], [0]
        lock = threading.Lock()

        def predict_client():
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    try:
                        r = client.post(f"{base}/api/predict", files={"image": ("p.jpg", photo)})
                    except httpx.HTTPError as err:
                        with lock:
                            failures.append(f"predict: {type(err).__name__}: {err}")
                        continue
                    ms = 1000 * (time.perf_counter() - t0)
                    with lock:
                        if r.status_code == 200 and len(r.json()["faces"]) == 1:
                            predict_ms.append(ms)
                        elif r.status_code == 503:
                            refused[0] += 1
                        else:
                            failures.append(f"predict: {r.status_code} {r.text[:100]}")
                    if r.status_code == 503:
                        time.sleep(0.05)

        def live_client():
            try:
                with connect(f"ws://127.0.0.1:{port}/api/live", max_size=2**22) as ws:
                    i = 0
                    while time.monotonic() < stop:
                        t0 = time.perf_counter()
                        ws.send(frames[i % len(frames)])
                        answer = json.loads(ws.recv(timeout=30))
                        ms = 1000 * (time.perf_counter() - t0)
                        with lock:
                            if "faces" in answer:
                                live_ms.append(ms)
                                live_frames_done[0] += 1
                            else:
                                failures.append(f"live: {answer}")
                        i += 1
            except Exception as err:  # noqa: BLE001 - counted and reported
                with lock:
                    failures.append(f"live: {type(err).__name__}: {err}")

        threads = ([threading.Thread(target=predict_client) for _ in range(args.predict_clients)]
                   + [threading.Thread(target=live_client) for _ in range(args.live)])
        start = time.monotonic()
        for t in threads:
            t.start()
        # /api/health must keep answering under the load.
        health_ms = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                httpx.get(f"{base}/api/health", timeout=5)
                health_ms.append(1000 * (time.perf_counter() - t0))
            except httpx.HTTPError as err:
                failures.append(f"health: {type(err).__name__}: {err}")
            time.sleep(0.5)
        for t in threads:
            t.join()
        seconds = time.monotonic() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.seek(0)
        server_log = log.read().splitlines()
        log.close()

    result = {
        "server": health, "seconds": round(seconds, 1),
        "predict_clients": args.predict_clients, "live_sockets": args.live,
        "predict": {"answers": len(predict_ms), "per_s": round(len(predict_ms) / seconds, 1),
                    "p50_ms": percentile(predict_ms, 50), "p95_ms": percentile(predict_ms, 95),
                    "refused_503": refused[0]},
        "live": {"frames": live_frames_done[0],
                 "frames_per_s": round(live_frames_done[0] / seconds, 1),
                 "frames_per_s_per_socket": round(live_frames_done[0] / seconds / max(1, args.live), 1),
                 "round_trip_p50_ms": percentile(live_ms, 50),
                 "round_trip_p95_ms": percentile(live_ms, 95)},
        "health": {"p50_ms": percentile(health_ms, 50), "max_ms": round(max(health_ms), 1)
                   if health_ms else None},
        "failures": failures[:20], "failure_count": len(failures),
        "server_log_lines": len(server_log), "server_log_tail": server_log[-5:],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
