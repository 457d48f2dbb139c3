"""The local web server of the human labeler (``human.py``): one labeling session's state, the HTTP handler and
the page (package data ``human.html``). Threads: the server's handle requests; clips are rendered on the thread
that iterates ``HumanLabeler.label()`` (``RenderJob``).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import secrets
import socketserver
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from robot_rl.rewards.base import CANT_TELL, EQUAL, FIRST, SECOND, Label, Query, Segment

if TYPE_CHECKING:
    from robot_rl.rewards.labelers.human import HumanLabeler

logger = logging.getLogger("robot_rl.rewards.labelers.human")

ANSWERS: dict[str, float | None] = {"left": FIRST, "right": SECOND, "equal": EQUAL, "skip": CANT_TELL}
"""The page's answers and the label values they give."""
SIDES = ("first", "second")
"""Clip names in URLs: ``first`` is shown on the left, ``second`` on the right."""
MAX_BODY = 4096
"""Largest accepted POST body, in bytes."""
_IMAGE_PATH = re.compile(r"image/(\d{1,9})/(first|second)")


class FrameSourceLike(Protocol):
    """What the labeler needs of ``Query.frames`` (``robot_rl.rewards.frames.FrameSource`` is one)."""

    def frames(self, segment: Segment) -> np.ndarray:
        """uint8 ``[L, H, W, 3]``: one frame per step of ``segment``."""
        ...

    def last_frame(self, segment: Segment) -> np.ndarray:
        """uint8 ``[H, W, 3]``: the frame at ``segment``'s last step."""
        ...

    def identity(self) -> dict[str, Any]:
        """What changes the frames (camera, size), JSON-serializable."""
        ...


@dataclass(frozen=True)
class Clip:
    """One encoded segment, as served to the page."""

    data: bytes
    content_type: str
    """``image/gif`` (animation) or ``image/png`` (a single frame)."""
    frames: int
    """Frames in the clip (after subsampling)."""




@dataclass(eq=False)
class RenderJob:
    """A clip the server asks the labeling thread to render."""

    key: tuple[int, str]
    done: threading.Event = field(default_factory=threading.Event)
    clip: Clip | None = None
    error: str | None = None


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


class Session:
    """One ``label()`` call's state, shared by the server threads and the labeling thread."""

    CACHE = 8
    """Encoded clips kept (the current and the next query's, with room for a stale tab)."""

    def __init__(self, labeler: HumanLabeler, queries: list[Query], sources: list[FrameSourceLike]) -> None:
        self.labeler = labeler
        self.queries = queries
        self.sources = sources
        self.token = secrets.token_urlsafe(16)
        self.origin = ""
        self.hosts: set[str] = set()
        self.events: queue.Queue[RenderJob | tuple[int, Label]] = queue.Queue()
        self.lock = threading.Lock()
        self.current = 0
        self.closed = False
        self.opened_at = {0: time.monotonic()}
        """When each query became the current one."""
        self.shown_at: dict[int, float] = {}
        """When the page first received each query."""
        self.cache: OrderedDict[tuple[int, str], Clip] = OrderedDict()
        self.pending: dict[tuple[int, str], RenderJob] = {}

    def state(self) -> dict[str, Any]:
        """What the page shows now (marks the current query as shown). Call with ``lock`` held."""
        total = len(self.queries)
        if self.current >= total:
            return {"index": total, "total": total, "done": True}
        self.shown_at.setdefault(self.current, time.monotonic())
        q = self.queries[self.current]
        return {"index": self.current, "total": total, "done": False, "task": q.task_text,
                "steps": [q.first.ref.length, q.second.ref.length]}

    def answer(self, index: int, answer: str, method: str, key: str | None) -> tuple[tuple[int, Label], dict[str, Any]]:
        """Accept the answer to query ``index`` if it is the current one: ``((index, Label), new state)``."""
        with self.lock:
            if self.closed:
                raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "labeling has stopped")
            if index != self.current:
                why = ("was already answered" if index < self.current else "is not open yet")
                raise HttpError(HTTPStatus.CONFLICT, f"query {index} {why}; the current one is {self.current}",
                                 {"state": self.state()})
            now = time.monotonic()
            seconds = now - self.shown_at.get(index, self.opened_at[index])
            self.current += 1
            self.opened_at[self.current] = now
            new_state = self.state()
        provenance: dict[str, Any] = {
            "labeler": self.labeler.name, "annotator": self.labeler.annotator, "answer": answer, "input": method,
            "answered_at": datetime.now(UTC).isoformat(timespec="milliseconds"), "seconds": round(seconds, 3)}
        if method == "key" and key:
            provenance["key"] = key
        return (index, Label(ANSWERS[answer], provenance)), new_state

    def clip(self, key: tuple[int, str], timeout: float) -> Clip:
        """The encoded clip ``key`` = (query index, side), rendered by the labeling thread if not cached."""
        with self.lock:
            clip = self.cache.get(key)
            if clip is not None:
                self.cache.move_to_end(key)
                return clip
            if self.closed:
                raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "labeling has stopped")
            job = self.pending.get(key)
            if job is None:
                job = self.pending[key] = RenderJob(key)
                self.events.put(job)
        if not job.done.wait(timeout):
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"clip not rendered within {timeout:g} s (the labeling "
                                                             "thread is busy or not iterating label())")
        if job.clip is None:
            raise HttpError(HTTPStatus.INTERNAL_SERVER_ERROR, job.error or "clip could not be rendered")
        return job.clip

    def run(self, job: RenderJob) -> None:
        """Render ``job`` (on the labeling thread)."""
        index, side = job.key
        try:
            with self.lock:
                clip = self.cache.get(job.key)
            if clip is None:
                query = self.queries[index]
                clip = self.labeler.encode(self.sources[index], query.first if side == "first" else query.second)
            job.clip = clip
        except Exception as e:  # a frame source failure must reach the page, not end the labeling
            logger.warning("human labeler: query %d %s clip failed: %s", index, side, e)
            job.error = f"cannot show query {index}'s {side} segment: {type(e).__name__}: {e}"
        finally:
            with self.lock:
                if job.clip is not None:
                    self.cache[job.key] = job.clip
                    while len(self.cache) > self.CACHE:
                        self.cache.popitem(last=False)
                self.pending.pop(job.key, None)
            job.done.set()

    def close(self) -> None:
        """Refuse new work and release requests waiting for clips."""
        with self.lock:
            self.closed = True
            jobs = list(self.pending.values())
            self.pending.clear()
        for job in jobs:
            job.error = "labeling has stopped"
            job.done.set()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], session: Session) -> None:
        self.session = session
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: it looks the host name up (slow without DNS)
        self.server_name = str(self.server_address[0])
        self.server_port = self.socket.getsockname()[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("human labeler: error while serving %s", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "robot_rl-human-labeler"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("human labeler: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_HEAD(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def do_PUT(self) -> None:
        self._dispatch(self._not_allowed)

    do_DELETE = do_PATCH = do_PUT

    def _dispatch(self, route: Callable[[str | None], None]) -> None:
        try:
            route(self._checked_path())
        except HttpError as e:
            self._json(e.status, {"error": e.message, **e.extra})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # never let a request end the labeling
            logger.warning("human labeler: request %s %s failed: %s", self.command, self.path, e)
            try:
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})
            except OSError:
                pass

    def _checked_path(self) -> str | None:
        """The path below the session's token (``None``: the token's URL without its trailing slash)."""
        session = self.server.session
        host = self.headers.get("Host")
        if host is not None and host not in session.hosts:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unexpected Host header '{host[:80]}'")
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        prefix = f"/{session.token}"
        if path == prefix:
            return None
        if not path.startswith(prefix + "/"):
            raise HttpError(HTTPStatus.NOT_FOUND, "not found: open the URL the labeler printed")
        return path[len(prefix) + 1:]

    def _get(self, path: str | None) -> None:
        session = self.server.session
        if path is None:
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", f"/{session.token}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "":
            self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": CSP})
        elif path == "state":
            with session.lock:
                state = session.state()
            self._json(HTTPStatus.OK, state)
        elif (match := _IMAGE_PATH.fullmatch(path)) is not None:
            index = int(match.group(1))
            if index >= len(session.queries):
                raise HttpError(HTTPStatus.NOT_FOUND, f"no query {index} (there are {len(session.queries)})")
            clip = session.clip((index, match.group(2)), session.labeler.render_timeout)
            self._send(HTTPStatus.OK, clip.data, clip.content_type,
                       {"Cache-Control": "private, max-age=86400", "X-Frames": str(clip.frames)})
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, f"not found: '{path[:80]}'")

    def _post(self, path: str | None) -> None:
        session = self.server.session
        if path != "answer":
            raise HttpError(HTTPStatus.NOT_FOUND if path != "" else HTTPStatus.METHOD_NOT_ALLOWED,
                             "POST only to 'answer'")
        origin = self.headers.get("Origin")
        if origin is not None and origin not in (session.origin, *(f"http://{h}" for h in session.hosts)):
            raise HttpError(HTTPStatus.FORBIDDEN, "cross-origin answers are refused")
        if self.headers.get_content_type() != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "answers must be sent as application/json")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if int(length) > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(int(length)))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}") from None
        index, answer, method, key = parse_answer(body)
        item, state = session.answer(index, answer, method, key)
        try:
            self._json(HTTPStatus.OK, {"accepted": True, "state": state})
        finally:  # after the reply, so that the page gets it even when this was the last answer and the server stops
            session.events.put(item)

    def _not_allowed(self, path: str | None) -> None:
        raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed")

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        headers = {"Cache-Control": "no-store", **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def parse_answer(body: Any) -> tuple[int, str, str, str | None]:
    """``(index, answer, input method, key)`` from a POSTed answer; 400 on anything else."""
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    index = body.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise HttpError(HTTPStatus.BAD_REQUEST, "'index' must be the answered query's index (an integer >= 0)")
    answer = body.get("answer")
    if answer not in ANSWERS:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"'answer' must be one of {', '.join(ANSWERS)}")
    method = body.get("input", "button")
    if method not in ("button", "key"):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'input' must be 'button' or 'key'")
    key = body.get("key")
    if key is not None and (not isinstance(key, str) or len(key) > 32):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'key' must be a key name (a short string)")
    return index, str(answer), str(method), key


CSP = ("default-src 'none'; connect-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

PAGE = resources.files("robot_rl.rewards.labelers").joinpath("human.html").read_text(encoding="utf-8")
"""The labeling page (package data ``robot_rl/rewards/labelers/human.html``): HTML, CSS and its script in one file."""
