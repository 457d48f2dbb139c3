"""A local OpenAI-compatible chat-completions server for tests: replays recorded or scripted answers and injects
faults, on 127.0.0.1 only.

    with ReplayServer() as server:                 # or the ``replay_server`` pytest fixture
        server.script(error(503), reply("Answer: 1"))
        client = LLMClient(fast_config(server))
        client.chat([user_message("hi")])          # 503, then the answer
        assert server.count == 2

How a request is answered, first match wins: the scripted queue (``script``, consumed one item per request), the
``responder`` callable, the ``recording`` (JSON in ``tests/llm/recordings/``), ``default``; else a 400 that says
nothing matched (a clear failure, never a retry loop). Every request is recorded (``requests``) and counted, in total
and per sha256 of its canonical JSON body (``count_for``, ``duplicates``), so tests can assert that no query was
sent twice; ``max_in_flight`` is the most requests handled at once.

Faults (``Behaviour`` fields): ``delay_s`` before the headers, ``drip_s`` between body chunks, ``status`` with
``error_message`` and ``retry_after``, and ``fault`` one of ``FAULTS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_rl.llm import LLMConfig, decode_image_part

RECORDINGS = Path(__file__).parent / "recordings"
MODEL = "replay-model"
FAULTS = ("reset_mid_body", "truncated_json", "empty_choices", "content_null")
"""``reset_mid_body``: half the body, then a TCP reset; ``truncated_json``: half the body with a matching
Content-Length (valid HTTP, invalid JSON); ``empty_choices``: ``"choices": []``; ``content_null``:
``"content": null``."""
TEST_KEY_ENV = "ROBOT_RL_TEST_LLM_KEY"
"""The env var ``fast_config`` reads the API key from (unset unless a test sets it)."""


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request."""

    content: str | None = "ok"
    status: int = 200
    delay_s: float = 0.0
    """Seconds before anything is sent."""
    drip_s: float = 0.0
    """Seconds between the body's ``drip_chunks`` pieces (0: the body in one write)."""
    drip_chunks: int = 10
    retry_after: str | None = None
    """``Retry-After`` header value (seconds or an HTTP date)."""
    error_message: str = "replay server error"
    """The error body's ``error.message`` for a non-200 status."""
    fault: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    model: str | None = None
    """The model name in the reply (default: the request's)."""

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault '{self.fault}'; faults: {', '.join(FAULTS)}")


def reply(content: str | None, **kw: Any) -> Behaviour:
    """A 200 reply with ``content`` (``None`` sends ``"content": null``)."""
    return Behaviour(content=content, **kw)


def error(status: int, message: str | None = None, retry_after: str | None = None, **kw: Any) -> Behaviour:
    """An HTTP error with an OpenAI-style error body."""
    return Behaviour(status=status, error_message=message or f"replay server: status {status}",
                     retry_after=retry_after, **kw)


def fault(kind: str, **kw: Any) -> Behaviour:
    return Behaviour(fault=kind, **kw)


def body_key(body: Any) -> str:
    """sha256 of a request body as canonical JSON: equal for two requests with the same content."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    key: str
    """``body_key(body)``."""
    time: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def texts(self) -> list[str]:
        """Every text of every message, in order (plain string contents and text parts)."""
        out: list[str] = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, str):
                out.append(content)
            elif isinstance(content, list):
                out.extend(str(p.get("text", "")) for p in content if p.get("type") == "text")
        return out

    @property
    def text(self) -> str:
        return "\n".join(self.texts())

    @property
    def last_text(self) -> str:
        """The text of the last message (what the request asks now)."""
        content = self.messages[-1].get("content") if self.messages else ""
        if isinstance(content, list):
            return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        return str(content or "")

    def image_parts(self) -> list[dict[str, Any]]:
        return [p for m in self.messages if isinstance(m.get("content"), list)
                for p in m["content"] if p.get("type") == "image_url"]

    def images(self) -> list[np.ndarray]:
        """The images of the request, decoded, in order."""
        return [decode_image_part(p) for p in self.image_parts()]


@dataclass
class Recording:
    """Recorded answers: the first entry whose ``contains`` strings all occur in the request's last message
    answers with its next answer (cycling). JSON: ``{"entries": [{"contains": [...], "answers": [...]}]}``, an
    answer being a string (the content) or an object of ``Behaviour`` fields."""

    entries: list[dict[str, Any]]
    _next: Counter[int] = field(default_factory=Counter)

    @staticmethod
    def load(name_or_path: str | Path) -> Recording:
        path = Path(name_or_path)
        if not path.suffix:
            path = RECORDINGS / f"{name_or_path}.json"
        data = json.loads(path.read_text())
        known = {f.name for f in fields(Behaviour)}
        for i, entry in enumerate(data["entries"]):
            if not entry.get("answers"):
                raise ValueError(f"{path}: entry {i} has no answers")
            for answer in entry["answers"]:
                if isinstance(answer, dict) and set(answer) - known:
                    raise ValueError(f"{path}: entry {i}: unknown Behaviour fields {sorted(set(answer) - known)}")
        return Recording(list(data["entries"]))

    def match(self, request: RecordedRequest) -> Behaviour | None:
        text = request.last_text
        for i, entry in enumerate(self.entries):
            if all(s in text for s in entry.get("contains", [])):
                answers = entry["answers"]
                answer = answers[self._next[i] % len(answers)]
                self._next[i] += 1
                return Behaviour(**answer) if isinstance(answer, dict) else reply(str(answer))
        return None


Responder = Callable[[RecordedRequest], Behaviour | str | None]
"""Answers a request (a string is a 200 reply with that content; ``None`` passes on to the recording/default)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default listen backlog of 5 drops bursts of connects (1 s SYN retry)
    block_on_close = False  # idle keep-alive connections must not block stop()
    owner: ReplayServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end after this
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route GET {self.path}", "code": 404}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route POST {self.path}", "code": 404}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, {"error": {"message": "the request body is not JSON", "code": 400}})
            return
        owner = self.server.owner
        request = RecordedRequest(self.path, dict(self.headers.items()), body, body_key(body), time.monotonic())
        behaviour = owner._register(request)
        with owner._in_flight():
            self._perform(behaviour, body)

    def _perform(self, b: Behaviour, body: dict[str, Any]) -> None:
        owner = self.server.owner
        if b.delay_s and owner._stopping.wait(b.delay_s):
            self.close_connection = True
            return
        headers: dict[str, str] = {}
        if b.status != 200:
            payload: dict[str, Any] = {"error": {"message": b.error_message, "type": "replay_error", "code": b.status}}
            if b.retry_after is not None:
                headers["Retry-After"] = b.retry_after
        else:
            payload = completion(None if b.fault == "content_null" else b.content, b.model or body.get("model", MODEL),
                                 b.prompt_tokens, b.completion_tokens)
            if b.fault == "empty_choices":
                payload["choices"] = []
        data = json.dumps(payload).encode()
        if b.fault == "truncated_json":
            data = data[: len(data) // 2]
        try:
            self.send_response(b.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if b.fault == "reset_mid_body":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # with linger 0: a TCP reset
                self.close_connection = True
                return
            if b.drip_s > 0:
                step = max(1, -(-len(data) // max(b.drip_chunks, 1)))
                for i in range(0, len(data), step):
                    self.wfile.write(data[i:i + step])
                    self.wfile.flush()
                    if i + step < len(data) and owner._stopping.wait(b.drip_s):
                        self.close_connection = True
                        return
            else:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def completion(content: str | None, model: str = MODEL, prompt_tokens: int = 11, completion_tokens: int = 7
               ) -> dict[str, Any]:
    """An OpenAI chat-completion body."""
    return {"id": "chatcmpl-replay", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class ReplayServer:
    """The server; ``start``/``stop`` or use it as a context manager. ``base_url`` ends in ``/v1``."""

    def __init__(self, responder: Responder | None = None, recording: Recording | str | Path | None = None,
                 default: Behaviour | None = None) -> None:
        self.responder = responder
        self.recording = Recording.load(recording) if isinstance(recording, str | Path) else recording
        self.default = default
        self._script: list[Behaviour] = []
        self._requests: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._active = 0
        self.max_in_flight = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="replay-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends delays and drips at once
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the replay server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting and inspection -----------------------------------------------------------------------------------

    def script(self, *items: Behaviour | str) -> None:
        """Queue answers for the next requests, in order (a string is a 200 reply with that content)."""
        with self._lock:
            self._script.extend(reply(i) if isinstance(i, str) else i for i in items)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def count_for(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    def duplicates(self) -> dict[str, int]:
        """Body hashes received more than once, with their counts."""
        with self._lock:
            return {k: n for k, n in self._counts.items() if n > 1}

    def reset(self) -> None:
        """Forget requests, counts and the scripted queue."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._counts.clear()
            self.max_in_flight = 0

    def _register(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self._requests.append(request)
            self._counts[request.key] += 1
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return scripted
        if self.responder is not None:
            try:
                answer = self.responder(request)
            except Exception as e:  # a broken responder fails the request clearly, and is not retried
                return error(400, f"replay server: the responder raised {type(e).__name__}: {' '.join(str(e).split())}")
            if answer is not None:
                return reply(answer) if isinstance(answer, str) else answer
        if self.recording is not None:
            recorded = self.recording.match(request)
            if recorded is not None:
                return recorded
        if self.default is not None:
            return self.default
        return error(400, "replay server: no scripted answer, responder, recording or default matches this request")

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self.max_in_flight = max(self.max_in_flight, self._active)
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1


@contextlib.contextmanager
def unresponsive_endpoint() -> Iterator[str]:
    """A base URL on 127.0.0.1 whose connections never complete: a listening socket whose accept backlog is full, so
    the kernel drops further SYNs and a client's connect hangs until its connect timeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # backlog 0 admits one or two; the rest sit in SYN-SENT and keep it full
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def fast_config(server: ReplayServer | str, **overrides: Any) -> LLMConfig:
    """An ``LLMConfig`` for ``server`` (or a base URL) with test-sized times: tiny backoff, 5 s deadline."""
    base_url = server if isinstance(server, str) else server.base_url
    settings: dict[str, Any] = {"model": MODEL, "base_url": base_url, "api_key_env": TEST_KEY_ENV,
                                "connect_timeout_s": 1.0, "deadline_s": 5.0, "max_retries": 3,
                                "backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_concurrency": 4}
    settings.update(overrides)
    return LLMConfig(**settings)


@pytest.fixture
def replay_server() -> Iterator[ReplayServer]:
    """A running ``ReplayServer`` (nothing scripted), stopped after the test."""
    with ReplayServer() as server:
        yield server
