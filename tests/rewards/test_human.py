"""The human labeler: its HTTP API (no browser needed) and its page, driven in headless Chromium through selenium.

Frames come from a tiny fake frame source (distinct colours per episode and step); no simulator is involved.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from robot_rl.rewards.base import CANT_TELL, EQUAL, FIRST, SECOND, Label, Query, Segment, SegmentRef
from robot_rl.rewards.labelers.human import HumanLabeler

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                   reason="needs Chromium and chromedriver on PATH (Debian: apt install chromium "
                                          "chromium-driver)")
H, W = 16, 24


class FakeFrames:
    """A duck-typed frame source: frame (episode e, step t) is filled with one colour unique to (e, t)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()

    def identity(self) -> dict[str, Any]:
        return {"camera": "fake", "size": [H, W]}

    def frames(self, segment: Segment) -> np.ndarray:
        self._record("frames", segment)
        episode = int(segment.ref.episode.removeprefix("ep"))
        out = np.zeros((segment.ref.length, H, W, 3), np.uint8)
        for k in range(segment.ref.length):
            out[k] = (40 * episode % 256, 20 * (segment.ref.start + k) % 256, 200)
        return out

    def last_frame(self, segment: Segment) -> np.ndarray:
        self._record("last_frame", segment)
        return np.full((H, W, 3), 90, np.uint8)

    def _record(self, method: str, segment: Segment) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append((method, segment.ref.episode))
        if self.fail:
            raise RuntimeError("no renderer here")


def n_frames(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def segment(episode: int, length: int, start: int = 0) -> Segment:
    return Segment(SegmentRef(f"ep{episode}", start, length), states=np.zeros((length, 2), np.float32),
                   actions=np.zeros((length, 2), np.float32), true_rewards=np.full(length, np.nan, np.float32))


def make_queries(frames: Any, lengths: tuple[int, ...] = (6, 5, 4, 1)) -> list[Query]:
    """Query i compares episodes 2i (left) and 2i + 1 (right), ``lengths[i]`` steps each."""
    return [Query(segment(2 * i, n), segment(2 * i + 1, n, start=3), f"task {i}: put the red block in the bin",
                  frames) for i, n in enumerate(lengths)]


def request(url: str, path: str = "", method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One HTTP request to the labeler's page URL + ``path``: (status, body, headers)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path + path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def post_answer(url: str, payload: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = request(url, "answer", "POST", json.dumps(payload).encode(),
                              {"Content-Type": "application/json", **headers})
    return status, json.loads(body)


class Consumer:
    """Iterates ``labeler.label(queries)`` on a thread, as a training loop would; stops after ``stop_after``."""

    def __init__(self, labeler: HumanLabeler, queries: list[Query], stop_after: int | None = None) -> None:
        self.labels: list[tuple[int, Label]] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(labeler, queries, stop_after), daemon=True)
        self.thread.start()

    def _run(self, labeler: HumanLabeler, queries: list[Query], stop_after: int | None) -> None:
        try:
            labels = labeler.label(queries)
            for item in labels:
                self.labels.append(item)
                if len(self.labels) == stop_after:
                    labels.close()  # type: ignore[attr-defined]  # a generator
                    break
        except BaseException as e:
            self.errors.append(e)

    def join(self) -> None:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "label() did not finish"
        assert not self.errors, self.errors


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def assert_port_released(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as s:  # nothing listens there any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_identity_and_argument_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    assert HumanLabeler().identity() == {"labeler": "human", "annotator": "alice"}
    labeler = HumanLabeler(annotator="bob", frames=FakeFrames())
    assert labeler.identity() == {"labeler": "human", "annotator": "bob", "camera": "fake", "size": [H, W]}
    assert (labeler.name, labeler.uses_images, labeler.url) == ("human", True, None)
    for host in ("0.0.0.0", "192.168.1.2", "::1", "example.org"):
        with pytest.raises(ValueError, match="loopback"):
            HumanLabeler(host=host)
    with pytest.raises(ValueError, match="port"):
        HumanLabeler(port=70000)


def test_queries_need_frames() -> None:
    queries = make_queries(None)
    with pytest.raises(ValueError, match="query 0 has no frames"):
        HumanLabeler().label(queries)  # at the call, before any server starts
    other = FakeFrames()
    other.identity = lambda: {"camera": "top", "size": [H, W]}  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="differ"):
        HumanLabeler(frames=FakeFrames()).label(make_queries(other))
    frames = FakeFrames()  # the labeler's own frame source serves queries that carry none
    assert HumanLabeler(frames=frames).label(queries) is not None
    assert list(HumanLabeler().label([])) == []


def test_clip_encoding() -> None:
    frames = FakeFrames()
    labeler = HumanLabeler(max_frames=5, max_size=12)
    clip = labeler.encode(frames, segment(0, 20))
    gif = Image.open(io.BytesIO(clip.data))
    assert (clip.content_type, clip.frames, gif.format, n_frames(gif)) == ("image/gif", 5, "GIF", 5)
    assert gif.size == (12, 8)  # longest side capped, aspect kept
    single = labeler.encode(frames, segment(1, 1))
    assert (single.content_type, single.frames, Image.open(io.BytesIO(single.data)).format) == ("image/png", 1, "PNG")
    assert frames.calls == [("frames", "ep0"), ("last_frame", "ep1")]


def test_http_api_bad_requests_and_close_releases_port() -> None:
    frames = FakeFrames()
    queries = make_queries(frames)
    queries[1] = Query(queries[1].first, queries[1].second, queries[1].task_text, FakeFrames(fail=True))  # type: ignore[arg-type]
    labeler = HumanLabeler(annotator="tester")
    consumer = Consumer(labeler, queries, stop_after=2)
    url = labeler.wait_for_url()
    port = urlsplit(url).port
    assert urlsplit(url).hostname == "127.0.0.1" and port
    with pytest.raises(OSError):  # bound to 127.0.0.1 only, not to every address
        socket.create_connection(("127.0.0.2", port), timeout=2).close()

    status, body, headers = request(url)
    assert status == 200 and b"Left better" in body and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert request(url, "state")[:2] == (200, json.dumps({"index": 0, "total": 4, "done": False, "task": queries[0]
                                                          .task_text, "steps": [6, 6]}).encode())
    assert frames.calls == []  # nothing rendered until a clip is asked for
    status, body, headers = request(url, "image/0/second")
    gif = Image.open(io.BytesIO(body))
    assert (status, headers["Content-Type"], headers["X-Frames"], n_frames(gif), gif.size) == (200, "image/gif", "6",
                                                                                            6, (W, H))
    assert gif.convert("RGB").getpixel((0, 0)) == (40, 60, 200)  # episode 1, step 3
    assert request(url, "image/3/first")[2]["Content-Type"] == "image/png"  # one-step segments: one frame
    assert frames.calls == [("frames", "ep1"), ("last_frame", "ep6")]
    assert frames.threads == {consumer.thread.ident}  # rendered by the thread iterating label()
    status, body, _ = request(url, "image/1/first")  # a frame source that fails: 500 with the reason
    assert status == 500 and "no renderer here" in json.loads(body)["error"]

    root = f"http://127.0.0.1:{port}/"
    assert request(root)[0] == 404  # no token
    assert request(f"http://127.0.0.1:{port}/wrong-token/state")[0] == 404
    assert request(url[:-1])[:1] == (301,)
    for path in ("nothing", "image/9/first", "image/0/middle", "image/x/first", "../state"):
        assert request(url, path)[0] == 404, path
    assert request(url, "state", headers={"Host": "evil.example:80"})[0] == 400  # DNS rebinding
    assert request(url, "answer", "PUT")[0] == 405
    assert request(url, "answer", "POST", b"{", {"Content-Type": "application/json"})[0] == 400
    assert request(url, "answer", "POST", b'{"index": 0, "answer": "left"}', {"Content-Type": "text/plain"})[0] == 415
    assert request(url, "answer", "POST", b"x" * 5000, {"Content-Type": "application/json"})[0] == 413
    assert post_answer(url, {"index": 0, "answer": "left"}, Origin="http://evil.example")[0] == 403
    for payload in ([0, "left"], {"answer": "left"}, {"index": True, "answer": "left"}, {"index": 0, "answer": "up"},
                    {"index": 0, "answer": "left", "input": "voice"}, {"index": 0, "answer": "left", "key": 5}):
        status, reply = post_answer(url, payload)
        assert status == 400 and reply["error"], payload
    assert post_answer(url, {"index": 1, "answer": "left"})[0] == 409  # not open yet
    time.sleep(0.2)
    assert consumer.labels == []  # no bad request gave a label

    status, reply = post_answer(url, {"index": 0, "answer": "right", "input": "key", "key": "ArrowRight"})
    assert status == 200 and reply["state"]["index"] == 1
    status, reply = post_answer(url, {"index": 0, "answer": "left"})  # a double click
    assert status == 409 and "already answered" in reply["error"] and reply["state"]["index"] == 1
    status, reply = post_answer(url, {"index": 1, "answer": "skip"})
    assert status == 200
    consumer.join()  # it closed the generator after two labels
    assert [(i, label.value) for i, label in consumer.labels] == [(0, SECOND), (1, CANT_TELL)]
    assert consumer.labels[0][1].provenance["key"] == "ArrowRight"
    assert labeler.url is None
    assert_port_released(port)


@pytest.fixture
def driver() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # never selenium-manager
    try:
        yield browser
    finally:
        browser.quit()


@needs_browser
def test_page_in_browser(driver: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    frames = FakeFrames()
    queries = make_queries(frames)
    labeler = HumanLabeler(annotator="tester", frames=frames)
    consumer = Consumer(labeler, queries)
    url = labeler.wait_for_url()
    port = urlsplit(url).port
    assert urlsplit(url).hostname == "127.0.0.1" and port

    def shows(index: int) -> None:
        """Wait until the page shows query ``index`` with both clips loaded; check what it shows."""
        wait_for(lambda: driver.execute_script("return document.body.dataset.ready") == str(index),
                 f"query {index} on the page")
        assert driver.find_element(By.ID, "task").text == queries[index].task_text
        assert driver.find_element(By.ID, "progress").text == f"{index + 1} / {len(queries)}"
        sizes = driver.execute_script("return ['img-first', 'img-second'].map(id => {"
                                      "const img = document.getElementById(id);"
                                      "return [img.complete, img.naturalWidth, img.naturalHeight]; })")
        assert sizes == [[True, W, H], [True, W, H]]

    def press(key: str) -> None:
        ActionChains(driver).send_keys(key).perform()

    driver.get(url)
    shows(0)
    assert {episode for _, episode in frames.calls} <= {"ep0", "ep1", "ep2", "ep3"}  # lazily: this and the next
    driver.find_element(By.ID, "btn-left").click()
    shows(1)
    press(Keys.ARROW_RIGHT)
    shows(2)
    wait_for(lambda: len(consumer.labels) == 2, "two labels")

    status, body = post_answer(url, {"index": 1, "answer": "left"})  # a stale tab answering an answered query
    assert status == 409 and body["state"]["index"] == 2
    time.sleep(0.2)
    assert len(consumer.labels) == 2

    driver.find_element(By.ID, "btn-equal").click()
    shows(3)  # one-step segments: single frames
    press("s")
    wait_for(lambda: driver.execute_script("return document.body.dataset.shown") == "done", "the done message")
    assert "All queries answered" in driver.find_element(By.ID, "done").text
    consumer.join()

    assert [(i, label.value) for i, label in consumer.labels] == [(0, FIRST), (1, SECOND), (2, EQUAL), (3, CANT_TELL)]
    inputs = [(p["answer"], p["input"], p.get("key")) for p in (label.provenance for _, label in consumer.labels)]
    assert inputs == [("left", "button", None), ("right", "key", "ArrowRight"), ("equal", "button", None),
                      ("skip", "key", "s")]
    for _, label in consumer.labels:
        p = label.provenance
        assert (p["labeler"], p["annotator"]) == ("human", "tester")
        assert 0 <= p["seconds"] < 30 and datetime.fromisoformat(p["answered_at"]).tzinfo is not None
    assert frames.threads == {consumer.thread.ident}
    assert labeler.url is None
    assert_port_released(port)
