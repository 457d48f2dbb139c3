"""The human labeler: a small local web page where a person watches two clips and says which is better.

``HumanLabeler.label(queries)`` starts a web server on the loopback interface (``http://127.0.0.1:<port>/<token>/``,
printed to stderr and available as ``HumanLabeler.url``) and yields each answer the moment it is given. The page
shows the current query's task sentence and its two segments side by side (left = ``query.first``, right =
``query.second``) as looping animations, with four answers:

=================  ===========================  ===========
answer             keys                         label
=================  ===========================  ===========
Left is better     ``ArrowLeft``                ``FIRST``
Right is better    ``ArrowRight``               ``SECOND``
Equally good       ``e`` or ``=``               ``EQUAL``
Can't tell (skip)  ``s`` or space               ``CANT_TELL``
=================  ===========================  ===========

(``r`` replays both clips from their start.) Queries are asked in order; after the last one the page says so and
the server stops. Closing the generator stops the server too.

Design:

- Frames are rendered lazily, when the page asks for a clip (the page also prefetches the next query's clips), and
  always on the thread that iterates ``label()``: a frame source that renders through a simulator (a GL context
  is bound to its thread) is never used from a server thread. A clip is an animated GIF (at most ``max_frames``
  frames, evenly subsampled, last frame kept; longest side at most ``max_size`` pixels, never upscaled; played at
  ``fps`` with the last frame held a moment), or a PNG for a one-step segment (``last_frame``).
- The server binds to an IPv4 loopback address only; every URL carries a random token, the ``Host`` header must
  name the server and a POST must be same-origin JSON (no other local page or DNS-rebinding site can answer).
- An answer names the query index it answers; the server accepts only the current one (``409`` otherwise), so a
  double click or a stale second tab never gives two labels for one query.
- Bad requests get a 4xx and a one-line JSON ``{"error": ...}``; nothing a client sends stops the labeling.

Provenance of each label: ``labeler``, ``annotator``, ``answer`` (left/right/equal/skip), ``input`` (``button`` or
``key``, with ``key``: the key's name), ``answered_at`` (UTC, ISO 8601) and ``seconds`` (from the page receiving the
query to the answer).

Identity: ``{"labeler": "human", "annotator": <annotator or $USER>}``, plus the frame camera and size
(``FrameSource.identity()``) when the labeler is built with ``frames=`` (the frame source the queries carry; a
query without frames then uses it). Without it the key does not record which camera the person saw.
"""

from __future__ import annotations

import getpass
import io
import ipaddress
import json
import logging
import os
import queue
import re
import secrets
import socketserver
import sys
import threading
import time
import webbrowser
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import numpy as np
from PIL import Image

from robot_rl.rewards.base import CANT_TELL, EQUAL, FIRST, SECOND, Label, Query, Segment

logger = logging.getLogger(__name__)

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


class HumanLabeler:
    """A ``Labeler`` whose answers come from a person using a local web page (see the module docstring).

    ``host`` must be an IPv4 loopback address or ``localhost`` (reach a remote machine through ``ssh -L``);
    ``port`` 0 picks a free port. ``open_browser`` opens the page in the default browser when labeling starts.
    ``annotator`` names the person (default ``$USER``). ``frames``: the frame source the queries carry, whose camera
    and size become part of the identity (optional; see the module docstring). ``max_frames``, ``max_size`` and
    ``fps`` shape the clips (see ``encode``). ``render_timeout``: seconds the server waits for a clip before
    answering 503 (clips are rendered by the thread iterating ``label()``, which must keep iterating).
    """

    name = "human"
    uses_images = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False,
                 annotator: str | None = None, frames: FrameSourceLike | None = None, max_frames: int = 64,
                 max_size: int = 320, fps: float = 10.0, render_timeout: float = 120.0) -> None:
        if host == "localhost":
            host = "127.0.0.1"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"human labeler: host must be an IPv4 loopback address such as 127.0.0.1, "
                             f"got '{host}'") from None
        if address.version != 4 or not address.is_loopback:
            raise ValueError(f"human labeler: host must be an IPv4 loopback address such as 127.0.0.1 (the page "
                             f"is never served to the network; use ssh -L for a remote annotator), got '{host}'")
        if not 0 <= port <= 65535:
            raise ValueError(f"human labeler: port must be in [0, 65535] (0: any free port), got {port}")
        if max_frames < 1 or max_size < 8 or not fps > 0 or not render_timeout > 0:
            raise ValueError(f"human labeler: need max_frames >= 1, max_size >= 8, fps > 0 and render_timeout > 0, "
                             f"got {max_frames}, {max_size}, {fps}, {render_timeout}")
        self.host = host
        self.port = port
        self.open_browser = open_browser
        self.annotator = annotator or _user_name()
        self.frames = frames
        self.max_frames = max_frames
        self.max_size = max_size
        self.fps = fps
        self.render_timeout = render_timeout
        self._url: str | None = None
        self._serving = threading.Event()
        self._busy = threading.Lock()

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"labeler": self.name, "annotator": self.annotator}
        if self.frames is not None:
            ident.update(self.frames.identity())
        return ident

    @property
    def url(self) -> str | None:
        """The page's address while ``label()`` is serving, else ``None``."""
        return self._url

    def wait_for_url(self, timeout: float = 10.0) -> str:
        """The page's address once ``label()`` serves it (for callers iterating ``label()`` on another thread);
        ``TimeoutError`` after ``timeout`` seconds."""
        if not self._serving.wait(timeout):
            raise TimeoutError(f"human labeler: not serving after {timeout:g} s (is label() being iterated?)")
        url = self._url
        if url is None:
            raise TimeoutError("human labeler: the server has already stopped")
        return url

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        """Serve the page and yield ``(index, Label)`` as the person answers, until every query is answered.

        Checks the queries first (``ValueError`` now, not at the first ``next``, when one has no frames); the
        server starts at the first ``next`` and stops when all are answered or the iterator is closed.
        """
        queries = list(queries)
        sources = [self._frame_source(i, q) for i, q in enumerate(queries)]
        return self._serve(queries, sources)

    def _frame_source(self, index: int, query: Query) -> FrameSourceLike:
        source: FrameSourceLike | None = query.frames if query.frames is not None else self.frames
        if source is None:
            raise ValueError(f"human labeler: query {index} has no frames (Query.frames is None); a person needs "
                             "images: build the queries with a FrameSource")
        if self.frames is not None and source is not self.frames and source.identity() != self.frames.identity():
            raise ValueError(f"human labeler: query {index}'s frames {source.identity()} differ from the labeler's "
                             f"{self.frames.identity()} (its identity would not describe what the person saw)")
        return source

    def _serve(self, queries: list[Query], sources: list[FrameSourceLike]) -> Iterator[tuple[int, Label]]:
        if not queries:
            return
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("human labeler: label() is already serving; one labeling at a time")
        try:
            session = _Session(self, queries, sources)
            try:
                server = _Server((self.host, self.port), session)
            except OSError as e:
                raise OSError(f"human labeler: cannot listen on {self.host}:{self.port}: {e.strerror or e}") from e
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name="human-labeler-http", daemon=True)
            thread.start()
            try:
                host, port = self.host, server.server_port
                session.origin = f"http://{host}:{port}"
                session.hosts = {f"{host}:{port}", f"localhost:{port}"}
                self._url = f"{session.origin}/{session.token}/"
                self._serving.set()
                print(f"human labeler: open {self._url} to answer {len(queries)} queries (keys: left/right arrow, "
                      "e equal, s can't tell)", file=sys.stderr,
                      flush=True)
                logger.info("human labeler serving %d queries at %s", len(queries), self._url)
                if self.open_browser:
                    webbrowser.open(self._url)
                remaining = len(queries)
                while remaining:
                    try:
                        event = session.events.get(timeout=0.5)
                    except queue.Empty:
                        if not thread.is_alive():
                            raise RuntimeError("human labeler: the web server stopped unexpectedly") from None
                        continue
                    if isinstance(event, _RenderJob):
                        session.run(event)
                    else:
                        remaining -= 1
                        yield event
            finally:
                self._url = None
                self._serving.clear()
                session.close()
                server.shutdown()
                server.server_close()
                thread.join(timeout=5.0)
                logger.info("human labeler stopped")
        finally:
            self._busy.release()

    def encode(self, source: FrameSourceLike, segment: Segment) -> Clip:
        """``segment``'s frames as a clip: a looping GIF, or a PNG for a one-step segment."""
        if segment.ref.length <= 1:
            frames = _check_frames(np.asarray(source.last_frame(segment))[None], segment)
        else:
            frames = _check_frames(np.asarray(source.frames(segment)), segment)
        if len(frames) > self.max_frames:
            keep = np.unique(np.linspace(0, len(frames) - 1, self.max_frames).round().astype(np.int64))
            step_ms = 1000.0 / self.fps * (len(frames) - 1) / max(len(keep) - 1, 1)
            frames = frames[keep]
        else:
            step_ms = 1000.0 / self.fps
        images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
        h, w = frames.shape[1:3]
        if max(h, w) > self.max_size:
            scale = self.max_size / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            images = [im.resize(size, Image.Resampling.LANCZOS) for im in images]
        buf = io.BytesIO()
        if len(images) == 1:
            images[0].save(buf, format="PNG")
            return Clip(buf.getvalue(), "image/png", 1)
        frame_ms = max(20, round(step_ms / 10) * 10)  # GIF delays are in 10 ms; browsers slow down delays < 20 ms
        durations = [frame_ms] * (len(images) - 1) + [max(frame_ms, 1000)]  # hold the final state a moment
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
        return Clip(buf.getvalue(), "image/gif", len(images))


def _user_name() -> str:
    name = os.environ.get("USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _check_frames(frames: np.ndarray, segment: Segment) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0 or frames.dtype != np.uint8:
        raise ValueError(f"episode {segment.ref.episode} step {segment.ref.start}: frames must be uint8 [L, H, W, 3], "
                         f"got {frames.dtype} {list(frames.shape)}")
    return frames


@dataclass(eq=False)
class _RenderJob:
    """A clip the server asks the labeling thread to render."""

    key: tuple[int, str]
    done: threading.Event = field(default_factory=threading.Event)
    clip: Clip | None = None
    error: str | None = None


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


class _Session:
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
        self.events: queue.Queue[_RenderJob | tuple[int, Label]] = queue.Queue()
        self.lock = threading.Lock()
        self.current = 0
        self.closed = False
        self.opened_at = {0: time.monotonic()}
        """When each query became the current one."""
        self.shown_at: dict[int, float] = {}
        """When the page first received each query."""
        self.cache: OrderedDict[tuple[int, str], Clip] = OrderedDict()
        self.pending: dict[tuple[int, str], _RenderJob] = {}

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
                raise _HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "labeling has stopped")
            if index != self.current:
                why = ("was already answered" if index < self.current else "is not open yet")
                raise _HttpError(HTTPStatus.CONFLICT, f"query {index} {why}; the current one is {self.current}",
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
                raise _HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "labeling has stopped")
            job = self.pending.get(key)
            if job is None:
                job = self.pending[key] = _RenderJob(key)
                self.events.put(job)
        if not job.done.wait(timeout):
            raise _HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"clip not rendered within {timeout:g} s (the labeling "
                                                             "thread is busy or not iterating label())")
        if job.clip is None:
            raise _HttpError(HTTPStatus.INTERNAL_SERVER_ERROR, job.error or "clip could not be rendered")
        return job.clip

    def run(self, job: _RenderJob) -> None:
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], session: _Session) -> None:
        self.session = session
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: it looks the host name up (slow without DNS)
        self.server_name = str(self.server_address[0])
        self.server_port = self.socket.getsockname()[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("human labeler: error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
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
        except _HttpError as e:
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
            raise _HttpError(HTTPStatus.BAD_REQUEST, f"unexpected Host header '{host[:80]}'")
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        prefix = f"/{session.token}"
        if path == prefix:
            return None
        if not path.startswith(prefix + "/"):
            raise _HttpError(HTTPStatus.NOT_FOUND, "not found: open the URL the labeler printed")
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
                raise _HttpError(HTTPStatus.NOT_FOUND, f"no query {index} (there are {len(session.queries)})")
            clip = session.clip((index, match.group(2)), session.labeler.render_timeout)
            self._send(HTTPStatus.OK, clip.data, clip.content_type,
                       {"Cache-Control": "private, max-age=86400", "X-Frames": str(clip.frames)})
        else:
            raise _HttpError(HTTPStatus.NOT_FOUND, f"not found: '{path[:80]}'")

    def _post(self, path: str | None) -> None:
        session = self.server.session
        if path != "answer":
            raise _HttpError(HTTPStatus.NOT_FOUND if path != "" else HTTPStatus.METHOD_NOT_ALLOWED,
                             "POST only to 'answer'")
        origin = self.headers.get("Origin")
        if origin is not None and origin not in (session.origin, *(f"http://{h}" for h in session.hosts)):
            raise _HttpError(HTTPStatus.FORBIDDEN, "cross-origin answers are refused")
        if self.headers.get_content_type() != "application/json":
            raise _HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "answers must be sent as application/json")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if int(length) > MAX_BODY:
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(int(length)))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _HttpError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}") from None
        index, answer, method, key = _parse_answer(body)
        item, state = session.answer(index, answer, method, key)
        try:
            self._json(HTTPStatus.OK, {"accepted": True, "state": state})
        finally:  # after the reply, so that the page gets it even when this was the last answer and the server stops
            session.events.put(item)

    def _not_allowed(self, path: str | None) -> None:
        raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed")

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


def _parse_answer(body: Any) -> tuple[int, str, str, str | None]:
    """``(index, answer, input method, key)`` from a POSTed answer; 400 on anything else."""
    if not isinstance(body, dict):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    index = body.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _HttpError(HTTPStatus.BAD_REQUEST, "'index' must be the answered query's index (an integer >= 0)")
    answer = body.get("answer")
    if answer not in ANSWERS:
        raise _HttpError(HTTPStatus.BAD_REQUEST, f"'answer' must be one of {', '.join(ANSWERS)}")
    method = body.get("input", "button")
    if method not in ("button", "key"):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "'input' must be 'button' or 'key'")
    key = body.get("key")
    if key is not None and (not isinstance(key, str) or len(key) > 32):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "'key' must be a key name (a short string)")
    return index, str(answer), str(method), key


CSP = ("default-src 'none'; connect-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Which is better? - robot_rl</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; padding: 1rem 2rem; background: #f4f4f2; color: #222; }
  header { display: flex; justify-content: space-between; align-items: baseline; gap: 2rem; }
  #task { font-size: 1.5rem; font-weight: 600; margin: 0.3rem 0 1rem; }
  #progress { font-size: 1.1rem; color: #555; white-space: nowrap; }
  #clips { display: flex; gap: 2rem; justify-content: center; }
  figure { margin: 0; text-align: center; }
  figure img { width: min(44vw, 512px, calc(100vh - 14rem)); aspect-ratio: 1; object-fit: contain;
               background: #ddd; display: block; }
  figcaption { margin-top: 0.4rem; color: #444; }
  #buttons { display: flex; gap: 1rem; justify-content: center; margin: 1.2rem 0 0.5rem; flex-wrap: wrap; }
  button { font-size: 1.1rem; padding: 0.6rem 1.2rem; border-radius: 6px; border: 1px solid #888; cursor: pointer;
           background: #fff; }
  button:hover { background: #e8eefc; }
  button.flash { background: #b9cdf7; }
  #message { text-align: center; min-height: 1.4em; color: #a33; }
  #hint { text-align: center; color: #666; font-size: 0.9rem; }
  #done { display: none; text-align: center; font-size: 1.6rem; margin-top: 4rem; }
  body.done #main { display: none; }
  body.done #done { display: block; }
</style>
</head>
<body>
<div id="main">
  <header><div id="task">Loading...</div><div id="progress"></div></header>
  <div id="clips">
    <figure><img id="img-first" alt="left segment"><figcaption id="cap-first">Left</figcaption></figure>
    <figure><img id="img-second" alt="right segment"><figcaption id="cap-second">Right</figcaption></figure>
  </div>
  <div id="buttons">
    <button id="btn-left" data-answer="left">&larr; Left better</button>
    <button id="btn-equal" data-answer="equal">Equal (=)</button>
    <button id="btn-skip" data-answer="skip">Can't tell (S)</button>
    <button id="btn-right" data-answer="right">Right better &rarr;</button>
  </div>
  <div id="message"></div>
  <div id="hint">Which segment better achieves the task? Keys: &larr; left, &rarr; right, E or = equal,
    S or space can't tell, R replay.</div>
</div>
<div id="done">All queries answered. Thank you! You can close this tab.</div>
<script>
"use strict";
const SIDES = ["first", "second"];
const KEYS = {ArrowLeft: "left", ArrowRight: "right", e: "equal", E: "equal", "=": "equal",
              s: "skip", S: "skip", " ": "skip"};
let state = null, shown = -1, ready = false, busy = false, blobs = {};
const $ = (id) => document.getElementById(id);

function message(text) { $("message").textContent = text || ""; }

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

function play() {
  for (const side of SIDES) {
    const img = $("img-" + side);
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    if (blobs[side]) img.src = URL.createObjectURL(blobs[side]); else img.removeAttribute("src");
  }
}

async function fetchClip(index, side) {
  const response = await fetch(`image/${index}/${side}`);
  if (!response.ok) throw new Error(await errorText(response));
  return {blob: await response.blob(), frames: response.headers.get("X-Frames")};
}

async function loadClips(s) {
  ready = false;
  blobs = {};
  document.body.dataset.ready = "";
  for (const side of SIDES) {
    $("img-" + side).removeAttribute("src");
    $("cap-" + side).textContent = (side === "first" ? "Left" : "Right") + " (loading...)";
  }
  const results = await Promise.allSettled(SIDES.map((side) => fetchClip(s.index, side)));
  if (shown !== s.index) return;  // the page moved on meanwhile
  const errors = [];
  SIDES.forEach((side, k) => {
    const name = side === "first" ? "Left" : "Right";
    const result = results[k];
    if (result.status === "fulfilled") {
      blobs[side] = result.value.blob;
      $("cap-" + side).textContent = `${name}: ${s.steps[k]} steps`;
    } else {
      errors.push(result.reason.message);
      $("cap-" + side).textContent = `${name}: not available`;
    }
  });
  play();  // both start together
  await Promise.allSettled(SIDES.filter((side) => blobs[side]).map((side) => $("img-" + side).decode()));
  if (shown !== s.index) return;
  ready = true;
  document.body.dataset.ready = String(s.index);
  message(errors.length ? errors.join("; ") + " - press S to skip" : "");
  if (s.index + 1 < s.total) {  // prefetch the next query's clips (cached by the browser)
    for (const side of SIDES) fetch(`image/${s.index + 1}/${side}`).catch(() => {});
  }
}

function show(s) {
  if (!s) return;
  state = s;
  if (s.done) {
    document.body.classList.add("done");
    document.body.dataset.shown = "done";
    return;
  }
  $("progress").textContent = `${s.index + 1} / ${s.total}`;
  if (s.index === shown) return;
  shown = s.index;
  document.body.dataset.shown = String(s.index);
  $("task").textContent = s.task;
  message("");
  loadClips(s);
}

async function answer(choice, input, key) {
  if (!state || state.done || busy) return;
  if (!ready && choice !== "skip") { message("Wait for both clips to load (or press S to skip)."); return; }
  busy = true;
  try {
    const response = await fetch("answer", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({index: state.index, answer: choice, input: input, key: key || null})});
    if (response.ok || response.status === 409) {
      show((await response.json()).state);
    } else {
      message(await errorText(response));
    }
  } catch (e) {
    message("The labeling server is not reachable (it stops when labeling ends or is interrupted).");
  } finally {
    busy = false;
  }
}

function flash(choice) {
  const button = document.querySelector(`button[data-answer="${choice}"]`);
  button.classList.add("flash");
  setTimeout(() => button.classList.remove("flash"), 150);
}

for (const button of document.querySelectorAll("button[data-answer]")) {
  button.addEventListener("click", () => {
    button.blur();  // a focused button would answer again on Enter or space
    answer(button.dataset.answer, "button");
  });
}
document.addEventListener("keydown", (event) => {
  if (event.repeat || event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.key === "r" || event.key === "R") { play(); return; }
  const choice = KEYS[event.key];
  if (!choice) return;
  event.preventDefault();  // no scrolling, no click on a focused button
  flash(choice);
  answer(choice, "key", event.key === " " ? "Space" : event.key);
});

fetch("state", {cache: "no-store"})
  .then(async (response) => response.ok ? show(await response.json()) : message(await errorText(response)))
  .catch(() => message("The labeling server is not reachable."));
</script>
</body>
</html>
"""
