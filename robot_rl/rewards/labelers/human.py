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

Design (the server, its session and the page: ``human_server.py``, ``human.html``):

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
import logging
import os
import queue
import sys
import threading
import webbrowser
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from robot_rl.rewards.base import Label, Query, Segment
from robot_rl.rewards.labelers.human_server import Clip, FrameSourceLike, RenderJob, Server, Session

logger = logging.getLogger(__name__)


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
            session = Session(self, queries, sources)
            try:
                server = Server((self.host, self.port), session)
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
                    if isinstance(event, RenderJob):
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
