"""`emotion serve` through the ASGI test client: health, predict (the same record as
`emotion predict --json`), what is refused (garbage, truncated, too large), a video job from
upload to downloads, the live socket, a busy server, and the page's own files."""

import contextlib
import csv
import json
import threading
import time
import socket
import warnings

import cv2
import numpy as np
import pytest

pytest.importorskip("httpx", reason="the test client needs httpx (pip install -e '.[dev]')")
with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient as StarletteClient  # noqa: E402

from emotion import cli  # noqa: E402

from emotion.video import pipeline
from emotion.labels import EMOTIONS  # noqa: E402
from emotion.io.rows import image_record  # noqa: E402
from emotion.io.rows import COLUMNS, JSON_KEYS  # noqa: E402
from emotion.serve.app import create_app  # noqa: E402
from tests.conftest import MEDIA  # noqa: E402



class TestClient(StarletteClient):
    """Starlette's test client, speaking to the app as a browser on this machine does: as
    http://127.0.0.1:8000 (the server answers only the names it is served under, and the
    client's own default is "testserver"), its sockets too."""

    BASE = "http://127.0.0.1:8000"

    def __init__(self, app, **kwargs):
        super().__init__(app, base_url=self.BASE, **kwargs)

    def websocket_connect(self, url, *args, **kwargs):
        return super().websocket_connect(url if "://" in url else "ws://127.0.0.1:8000" + url,
                                         *args, **kwargs)


needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found at {MEDIA}")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Fake:
    """predict_faces like EmotionClassifier's, optionally slow (a busy model)."""

    model_name = "fake"

    def __init__(self, delay=0.0):
        self.delay, self.calls = delay, 0

    def predict_faces(self, crops):
        self.calls += 1
        time.sleep(self.delay)
        probs = np.full((len(crops), 7), 0.05, np.float32)
        probs[:, EMOTIONS.index("happy")] = 0.7
        return probs


@pytest.fixture(scope="module")
def compact():
    return pipeline.load_classifier("compact")


def jpeg(image) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def clip_frames(n, width=320):
    capture = cv2.VideoCapture(str(MEDIA / "woman_talking.mp4"))
    frames = []
    for _ in range(n):
        ok, frame = capture.read()
        frames.append(cv2.resize(frame, (width, frame.shape[0] * width // frame.shape[1] // 2 * 2)))
    capture.release()
    return frames


def test_health_names_the_model_and_backend():
    with TestClient(create_app(classifier=Fake())) as client:
        answer = client.get("/api/health").json()
    assert answer["status"] == "ok" and answer["model"] == "fake" and answer["backend"]


def test_the_page_and_its_modules_are_served_and_nothing_else():
    with TestClient(create_app(classifier=Fake())) as client:
        page = client.get("/")
        assert page.status_code == 200 and "app.js" in page.text
        assert "'self'" in page.headers["content-security-policy"]
        for name in ["app.js", "live.js", "photos.js", "video.js", "inside.js", "draw.js",
                     "style.css"]:
            assert client.get(f"/static/{name}").status_code == 200, name
        assert "http" not in page.text.replace("http-equiv", "")  # nothing from the internet
        for path in ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"]:
            assert client.get(path).status_code == 404, path


@needs_media
@pytest.mark.parametrize("name, faces", [("group_selfie.jpg", 6), ("two_faces.jpg", 2),
                                         ("single_face.jpg", 1)])
def test_predict_answers_the_record_of_emotion_predict_json(compact, name, faces):
    data = (MEDIA / name).read_bytes()
    with TestClient(create_app(classifier=compact)) as client:
        answer = client.post("/api/predict", files={"image": (f"../x/{name}", data, "image/jpeg")})
    assert answer.status_code == 200
    record = answer.json()
    assert len(record["faces"]) == faces
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    expected = image_record(name, pipeline.analyze_image(
        compact, image, *pipeline.photo_detectors(), landmarker=pipeline.load_landmarker(compact)))
    assert record == json.loads(json.dumps(expected))  # the file's own name, never the path


@needs_media
def test_predict_takes_the_raw_body_too():
    with TestClient(create_app(classifier=Fake())) as client:
        answer = client.post("/api/predict", content=(MEDIA / "single_face.jpg").read_bytes())
    assert answer.status_code == 200 and answer.json()["file"] == "upload"
    assert answer.json()["faces"][0]["emotion"] == "happy"


@needs_media
def test_what_is_not_an_image_is_refused_with_a_json_error(caplog):
    whole = (MEDIA / "single_face.jpg").read_bytes()
    with TestClient(create_app(classifier=Fake())) as client:
        cases = {
            415: client.post("/api/predict", files={"image": ("photo.jpg", b"\x00garbage" * 50)}),
            422: client.post("/api/predict", content=whole[: len(whole) // 2]),
        }
        empty = client.post("/api/predict", content=b"")
        wrong_field = client.post("/api/predict", files={"photo": ("a.jpg", whole)})
    assert cases[415].status_code == 415 and "not an image" in cases[415].json()["error"]
    assert cases[422].status_code == 422 and "truncated" in cases[422].json()["error"]
    assert empty.status_code == 422 and wrong_field.status_code == 422
    assert "image" in wrong_field.json()["error"]
    assert "Traceback" not in caplog.text


def test_an_upload_over_the_limit_gets_413_announced_or_streamed():
    with TestClient(create_app(classifier=Fake(), max_upload_mb=1)) as client:
        announced = client.post("/api/predict", content=b"\xff" * (2 * 2**20))

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(40):
                yield b"\xff" * 65536

        streamed = client.post("/api/predict", content=chunks())
        as_form = client.post("/api/video", files={"video": ("a.mp4", b"0" * (2 * 2**20))})
    for answer in (announced, streamed, as_form):
        assert answer.status_code == 413 and "1 MB" in answer.json()["error"]


@needs_media
def test_a_video_job_runs_to_its_downloads_and_its_folder_goes_at_shutdown(tmp_path):
    frames = clip_frames(8)
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0,
                             frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    app = create_app(classifier=Fake(), job_dir=tmp_path)
    with TestClient(app) as client:
        start = client.post("/api/video", files={"video": ("../../clip.mp4", clip.read_bytes())})
        assert start.status_code == 202
        job_id = start.json()["id"]
        deadline = time.monotonic() + 30
        while (job := client.get(f"/api/jobs/{job_id}").json())["status"] not in ("done", "error"):
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["status"] == "done", job
        assert job["frames"] == 8 and job["progress"] == 1.0 and job["tracks"] >= 1
        table = client.get(job["outputs"]["csv"])
        rows = list(csv.DictReader(table.text.splitlines()))
        lines = client.get(job["outputs"]["jsonl"]).text.splitlines()
        video = client.get(job["outputs"]["video"])
        assert table.status_code == video.status_code == 200
        assert video.headers["content-type"] == "video/webm" and video.content[:4] == b"\x1aE\xdf\xa3"
        assert len(rows) == len(lines) == job["rows"] > 0 and list(rows[0]) == COLUMNS
        assert {json.loads(line)["emotion"] for line in lines} == {"happy"}
        for bad in [f"/api/jobs/{job_id}/input.mp4", f"/api/jobs/{job_id}/..%2Ffaces.csv",
                    "/api/jobs/nosuchjob", "/api/jobs/nosuchjob/faces.csv"]:
            assert client.get(bad).status_code == 404, bad
        refused = client.post("/api/video", content=b"not a video at all" * 100)
        assert refused.status_code == 415 and "not a video" in refused.json()["error"]
        root = app.state.jobs().root
        assert root.parent == tmp_path and (root / job_id / "faces.csv").is_file()
        assert not any(root.glob("*/input*"))  # the upload is deleted once processed
    assert not root.exists()


@needs_media
def test_finished_jobs_expire():
    app = create_app(classifier=Fake(), job_ttl=0.0)
    frames = clip_frames(2)
    with TestClient(app):
        store = app.state.jobs()
        data = cv2.imencode(".png", frames[0])[1].tobytes()  # OpenCV reads a PNG as a 1-frame video
        job = store.create(data, "one.png")
        store.executor.submit(lambda: None).result()  # wait for the job thread
        assert job.status in ("done", "error") and job.folder.exists()
        time.sleep(0.01)
        assert store.expire() == 1 and not job.folder.exists() and store.get(job.id) is None


@needs_media
def test_the_live_socket_answers_each_frame_with_video_jsonl_rows(caplog):
    with TestClient(create_app(classifier=Fake())) as client:
        with client.websocket_connect("/api/live") as ws:
            answers = []
            for frame in clip_frames(4):
                ws.send_bytes(jpeg(frame))
                answers.append(ws.receive_json())
            ws.send_bytes(b"no jpeg")
            broken = ws.receive_json()
            ws.send_bytes(jpeg(clip_frames(1)[0]))
            after = ws.receive_json()
    assert [a["frame"] for a in answers] == [0, 1, 2, 3]
    for answer in answers:
        assert answer["latency_ms"] >= 0 and len(answer["faces"]) == 1
        assert list(answer["faces"][0]) == JSON_KEYS and answer["faces"][0]["frame"] == answer["frame"]
    assert {a["faces"][0]["track_id"] for a in answers} == {1}  # one track across the frames
    assert broken["frame"] == 4 and "not an image" in broken["error"]
    assert after["frame"] == 5 and after["faces"]  # the session went on
    assert "Traceback" not in caplog.text


@needs_media
def test_the_live_socket_drops_stale_frames():
    frames = [jpeg(f) for f in clip_frames(6)]
    with TestClient(create_app(classifier=Fake(delay=0.3))) as client:
        with client.websocket_connect("/api/live") as ws:
            for data in frames:  # far faster than one frame's 0.3 s
                ws.send_bytes(data)
            first = ws.receive_json()
            second = ws.receive_json()
    assert first["frame"] == 0  # taken at once
    assert second["frame"] == 5 and second["dropped"] == 4  # then the newest, not frame 1


@needs_media
def test_a_busy_model_refuses_with_503_and_health_still_answers():
    data = (MEDIA / "single_face.jpg").read_bytes()
    app = create_app(classifier=Fake(delay=0.5), max_pending=2)
    with TestClient(app) as client:
        codes = []

        def post():
            codes.append(client.post("/api/predict", content=data).status_code)

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        start = time.monotonic()
        health = client.get("/api/health")
        waited = time.monotonic() - start
        for t in threads:
            t.join()
    assert health.status_code == 200 and waited < 0.4, waited
    assert sorted(codes) == [200, 200, 503, 503, 503, 503], codes


def test_live_frames_go_before_the_queued_uploads():
    import asyncio

    from emotion.serve.worker import LIVE, InferenceWorker

    order, release = [], threading.Event()

    def job(name):
        if name == "running":
            release.wait(5)
        order.append(name)
        return name

    async def scenario():
        worker = InferenceWorker(max_pending=8)
        try:
            running = asyncio.ensure_future(worker.run(job, "running"))
            await asyncio.sleep(0.05)  # the thread has taken it and blocks in it
            uploads = [asyncio.ensure_future(worker.run(job, f"upload{i}")) for i in range(3)]
            await asyncio.sleep(0.01)
            frame = asyncio.ensure_future(worker.run(job, "frame", lane=LIVE))
            await asyncio.sleep(0.01)
            assert worker.pending == 4  # the uploads count against the bound, the frame not
            release.set()
            return await asyncio.gather(running, *uploads, frame)
        finally:
            worker.close()

    answers = asyncio.run(scenario())
    assert answers == ["running", "upload0", "upload1", "upload2", "frame"]  # each its own
    assert order == ["running", "frame", "upload0", "upload1", "upload2"]  # the frame first


def test_live_sockets_that_never_pause_do_not_starve_the_uploads():
    import asyncio

    from emotion.serve.worker import LIVE, InferenceWorker

    order = []

    def job(name):
        time.sleep(0.02)
        order.append(name)

    async def scenario():
        worker = InferenceWorker(max_pending=8)

        async def socket(name):  # sends its next frame as soon as it has the answer
            for i in range(8):
                await worker.run(job, f"{name}{i}", lane=LIVE)

        try:
            blocker = asyncio.ensure_future(worker.run(job, "running"))
            uploads = [worker.run(job, f"upload{i}") for i in range(3)]
            await asyncio.gather(blocker, socket("a"), socket("b"), *uploads)
        finally:
            worker.close()

    asyncio.run(scenario())
    assert len(order) == 20
    # Rounds: the frames that waited, then one upload: the three uploads are done by the
    # time each socket has had three or four frames, not after all sixteen.
    last_upload = order.index("upload2")
    assert last_upload < 12, order
    lives_before = [name for name in order[:last_upload] if name[0] in "ab"]
    assert 4 <= len(lives_before) <= 8, order


@needs_media
def test_a_live_frame_waits_for_one_predict_not_the_whole_queue():
    data = (MEDIA / "single_face.jpg").read_bytes()
    frame = jpeg(clip_frames(1)[0])
    with TestClient(create_app(classifier=Fake(delay=0.3), max_pending=8)) as client:
        codes, done = [], []

        def post():
            codes.append(client.post("/api/predict", content=data).status_code)
            done.append(time.monotonic())

        threads = [threading.Thread(target=post) for _ in range(5)]
        with client.websocket_connect("/api/live") as ws:
            for t in threads:
                t.start()
            time.sleep(0.15)  # five predicts of 0.3 s (and their face detection) queued
            ws.send_bytes(frame)
            answer = ws.receive_json()
            answered = time.monotonic()
        for t in threads:
            t.join()
    assert codes == [200] * 5 and answer["faces"]
    # Behind the predict that was running, not behind the four queued after it: answered
    # before the second of them is done (in one first-come queue, after all five).
    assert answered < sorted(done)[2], (answered - min(done), [d - min(done) for d in done])


@needs_media
def test_concurrent_predicts_all_get_their_answer():
    photos = {name: (MEDIA / name).read_bytes() for name in ("single_face.jpg", "two_faces.jpg")}
    with TestClient(create_app(classifier=Fake(), max_pending=8)) as client:
        results = {}

        def post(i, name):
            results[i] = (name, client.post("/api/predict", files={"image": (name, photos[name])}))

        threads = [threading.Thread(target=post, args=(i, name))
                   for i, name in enumerate(list(photos) * 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 6
    for name, answer in results.values():
        assert answer.status_code == 200 and answer.json()["file"] == name
        assert len(answer.json()["faces"]) == {"single_face.jpg": 1, "two_faces.jpg": 2}[name]


@needs_media
def test_explain_returns_the_steps_maps_and_saliency_as_pngs(compact):
    with TestClient(create_app(classifier=compact)) as client:
        answer = client.post("/api/explain", content=(MEDIA / "single_face.jpg").read_bytes())
    assert answer.status_code == 200
    ex = answer.json()
    assert ex["box"] and ex["faces_found"] == 1 and ex["model"] == "compact"
    assert [s["name"] for s in ex["steps"]][0] == "gray" and len(ex["conv_maps"]) >= 2
    import base64
    for png in [s["png"] for s in ex["steps"]] + [m["png"] for m in ex["conv_maps"]] + [
            ex["saliency"], ex["grad_cam"]]:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(png), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and min(image.shape[:2]) >= 48
    assert abs(sum(ex["probabilities"].values()) - 1) < 1e-3


def test_the_cli_warns_on_all_interfaces_and_refuses_a_bad_port(monkeypatch, capsys):
    import uvicorn

    started = {}
    monkeypatch.setattr(pipeline, "load_classifier", lambda weights=None, backend=None: Fake())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(kw))
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert started["host"] == "0.0.0.0" and started["port"] == 8123
    assert "warning: listening on all interfaces" in capsys.readouterr().err
    assert cli.main(["serve"]) == 0 and started["host"] == "127.0.0.1"
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert "between 1 and 65535" in capsys.readouterr().err


def test_a_taken_port_is_one_line_before_the_model_loads(monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr(pipeline, "load_classifier",
                        lambda weights=None, backend=None: loaded.append(1) or Fake())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 1
    assert "the port is in use" in capsys.readouterr().err
    assert loaded == []


# Issue 29: the server's rough edges.

@pytest.mark.parametrize("option", ["--max-upload-mb", "--max-megapixels", "--idle-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "0", "-3"])
def test_a_limit_must_be_a_finite_positive_number(monkeypatch, capsys, option, value):
    loaded = []
    monkeypatch.setattr(pipeline, "load_classifier",
                        lambda weights=None, backend=None: loaded.append(1) or Fake())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and loaded == []
    assert f"argument {option}: must be a number > 0, got {value}" in err
    assert "Traceback" not in err


def test_the_cli_passes_its_limits_and_host_to_the_app(monkeypatch):
    import uvicorn

    from emotion.serve import app as app_module

    made = {}
    monkeypatch.setattr(pipeline, "load_classifier", lambda weights=None, backend=None: Fake())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    real = app_module.create_app
    monkeypatch.setattr(app_module, "create_app", lambda **kw: made.update(kw) or real(**kw))
    assert cli.main(["serve", "--max-upload-mb", "2.5", "--max-megapixels", "0.5",
                     "--idle-timeout", "7"]) == 0
    assert made["max_upload_mb"] == 2.5 and made["max_pixels"] == 500_000
    assert made["idle_timeout"] == 7 and made["host"] == "127.0.0.1"


@needs_media
def test_the_live_socket_answers_text_empty_and_oversized_frames_and_goes_on(caplog):
    from emotion.serve.camera import MAX_FRAME_BYTES

    frame = jpeg(clip_frames(1)[0])
    with TestClient(create_app(classifier=Fake())) as client:
        with client.websocket_connect("/api/live") as ws:
            answers = []
            for message in ["hello", b"", b"\xff\xd8\xff" + b"\0" * MAX_FRAME_BYTES, frame]:
                (ws.send_text if isinstance(message, str) else ws.send_bytes)(message)
                answers.append(ws.receive_json())
    text, empty, big, good = answers
    assert [a["frame"] for a in answers] == [0, 1, 2, 3]
    assert "text message" in text["error"] and "empty" in empty["error"]
    assert "MB" in big["error"] and "faces" not in big
    assert good["faces"] and "error" not in good  # the session went on
    assert "Traceback" not in caplog.text and "1011" not in caplog.text


def solid_png(width, height) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width), np.uint8))[1].tobytes()


def test_an_image_over_the_pixel_cap_is_refused_from_its_header(monkeypatch):
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    big = solid_png(4000, 3000)  # 12 megapixels in a few kB
    with TestClient(create_app(classifier=Fake(), max_pixels=10_000_000)) as client:
        refused = client.post("/api/predict", content=big)
        refused_explain = client.post("/api/explain", files={"image": ("big.png", big)})
        with client.websocket_connect("/api/live") as ws:
            ws.send_bytes(big)
            frame = ws.receive_json()
        assert decoded == []  # refused from the header: never decoded
        accepted = client.post("/api/predict", content=solid_png(3000, 3000))
    for answer in (refused, refused_explain):
        assert answer.status_code == 413 and answer.headers["content-type"] == "application/json"
        assert "4000 x 3000" in answer.json()["error"] and "--max-megapixels" in answer.json()["error"]
    assert "4000 x 3000" in frame["error"]
    assert accepted.status_code == 200 and decoded == [1]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".gif"])
def test_the_header_gives_the_size_of_every_format_opencv_writes(ext):
    from emotion.serve.pixels import header_size

    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8)
    try:
        ok, data = cv2.imencode(ext, image)
    except cv2.error:
        pytest.skip(f"this OpenCV does not write {ext}")
    assert ok and header_size(data.tobytes()) == (53, 37)
    assert header_size(data.tobytes()[:6]) is None  # cut short: decoded, then checked


def test_an_image_whose_header_is_not_read_is_checked_once_decoded():
    from emotion.serve.uploads import UploadError, decode_image

    hdr = cv2.imencode(".hdr", np.zeros((30, 40, 3), np.float32))[1].tobytes()  # no reader
    with pytest.raises(UploadError) as refused:
        decode_image(hdr, max_pixels=1000)
    assert refused.value.status == 413 and "40 x 30" in str(refused.value)
    assert decode_image(hdr, max_pixels=1200).shape[:2] == (30, 40)


def test_not_found_wrong_method_and_bad_multipart_are_json(caplog):
    with TestClient(create_app(classifier=Fake())) as client:
        answers = {
            404: client.get("/api/nothing"),
            405: client.get("/api/predict"),
            400: client.post("/api/predict", content=b"--x\r\n",
                             headers={"content-type": "multipart/form-data"}),  # no boundary
        }
        missing_static = client.get("/static/nothing.js")
    for status, answer in answers.items():
        assert answer.status_code == status, (status, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]
    assert "POST" in answers[405].headers["allow"] and "POST" in answers[405].json()["error"]
    assert missing_static.status_code == 404 and missing_static.json()["error"]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("multipart", [False, True])
def test_a_client_gone_mid_upload_is_not_a_500(caplog, multipart):
    import asyncio
    import logging

    app = create_app(classifier=Fake())
    content_type = b"multipart/form-data; boundary=x" if multipart else b"image/jpeg"
    first = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
             if multipart else b"") + b"\xff\xd8\xff" + b"\0" * 1000
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/predict", "raw_path": b"/api/predict", "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", content_type)]}
    messages = iter([{"type": "http.request", "body": first, "more_body": True},
                     {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    caplog.set_level(logging.INFO, logger="emotion.serve")
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        app.state.shutdown()
    assert not [m for m in sent if m.get("status") == 500], sent
    assert "500" not in caplog.text and "went away" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("host, accepted", [
    ("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True),
    ("LOCALHOST:8000", True), ("evil.example:8000", False), ("evil.example", False),
    ("127.0.0.1:9000", False), ("127.0.0.1", False), ("", False), ("127.0.0.1:8000:1", False),
])
def test_only_the_names_the_server_is_served_under_are_answered(host, accepted):
    with TestClient(create_app(classifier=Fake())) as client:
        answer = client.get("/api/health", headers={"host": host})
    assert answer.status_code == (200 if accepted else 403), answer.text
    if not accepted:
        assert "Host" in answer.json()["error"]


def test_a_host_given_is_the_name_served_and_all_interfaces_take_ip_literals():
    from emotion.serve.guard import ServedNames

    named = ServedNames("192.168.1.5")
    assert named.accepts("192.168.1.5") and not named.accepts("localhost")
    assert not named.accepts("evil.example")
    anywhere = ServedNames("0.0.0.0")
    assert anywhere.accepts("10.1.2.3") and anywhere.accepts("[fe80::1]")
    assert anywhere.accepts("localhost") and not anywhere.accepts("evil.example")
    assert ServedNames("::1").accepts("[::1]") and ServedNames("::1").accepts("127.0.0.1")


@pytest.mark.parametrize("origin, accepted", [
    (None, True), ("http://127.0.0.1:8000", True), ("http://localhost:8000", True),
    ("http://evil.example", False), ("http://127.0.0.1:3000", False), ("null", False),
    ("http://evil.example:8000", False), ("file://", False),
])
def test_only_pages_of_this_server_may_post_or_open_the_live_socket(origin, accepted):
    from starlette.websockets import WebSocketDisconnect

    headers = {} if origin is None else {"origin": origin}
    with TestClient(create_app(classifier=Fake())) as client:
        post = client.post("/api/predict", content=b"", headers=headers)
        if accepted:
            with client.websocket_connect("/api/live", headers=dict(headers)) as ws:
                ws.send_bytes(b"")
                assert "error" in ws.receive_json()
        else:
            with pytest.raises(WebSocketDisconnect) as closed:
                with client.websocket_connect("/api/live", headers=dict(headers)):
                    pass
            assert closed.value.code == 1008
    assert post.status_code == (422 if accepted else 403), post.text  # 422: the empty body
    if not accepted:
        assert "origin" in post.json()["error"]


def test_every_answer_forbids_framing_and_type_sniffing():
    with TestClient(create_app(classifier=Fake(), max_upload_mb=1)) as client:
        answers = [client.get("/"), client.get("/api/health"), client.get("/static/app.js"),
                   client.get("/api/nothing"), client.post("/api/predict", content=b"x"),
                   client.post("/api/predict", content=b"\xff" * (2 * 2**20)),
                   client.get("/api/health", headers={"host": "evil.example"})]
    for answer in answers:
        assert answer.headers["x-frame-options"] == "DENY", answer.request.url
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "default-src 'self'" in answers[0].headers["content-security-policy"]  # the page's own


@needs_media
def test_idle_live_sessions_are_closed_and_free_their_places():
    from starlette.websockets import WebSocketDisconnect

    from emotion.serve.camera import MAX_LIVE

    frame = jpeg(clip_frames(1)[0])
    with TestClient(create_app(classifier=Fake(), idle_timeout=0.5)) as client, \
            contextlib.ExitStack() as sockets:
        idle = [sockets.enter_context(client.websocket_connect("/api/live"))
                for _ in range(MAX_LIVE)]
        idle[0].send_bytes(frame)
        assert idle[0].receive_json()["faces"]  # a frame, then silence
        time.sleep(1.0)
        assert client.get("/api/health").json()["live_sessions"] == 0
        for ws in idle:
            closed = ws.receive()
            assert closed["type"] == "websocket.close" and closed["code"] == 1000
            assert "no frame for 0.5 s" in closed["reason"]
        with client.websocket_connect("/api/live") as ws:  # a place is free again
            ws.send_bytes(frame)
            assert ws.receive_json()["faces"]
