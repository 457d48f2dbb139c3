"""``LLMClient``: one client for OpenAI-compatible chat-completions endpoints (vLLM, SGLang, Ollama, OpenAI, Gemini's
compatible endpoint), text and images, sync and async.

Why httpx and not the ``openai`` SDK: the protocol needed is one ``POST /chat/completions`` with a JSON body, and
every behaviour that matters here is about the raw exchange, which the SDK hides or handles its own way:

- a *total* deadline per query covering connecting, every retry, backoff and ``Retry-After`` waits and a body that
  drips in slowly. The SDK's timeouts are httpx's per-phase ones (a read timeout restarts with every chunk), so the
  deadline would have to wrap the SDK anyway; here one ``asyncio.timeout_at`` wraps each attempt, and the message
  says in which phase it ran out (waiting for headers, or N bytes into the body).
- the retry policy: with the SDK's own retries disabled, its exceptions would still have to be mapped back
  (``APIConnectionError`` wraps connect errors, resets and timeouts alike; a truncated JSON body surfaces as
  different errors across SDK versions). Here each case is distinguished where it happens: connect timeout,
  refused connection, reset mid-body, truncated or invalid JSON, empty ``choices``, ``content: null``, status.
- error bodies differ between servers (OpenAI ``{"error": {"message"}}``, vLLM ``{"message"}``, Ollama
  ``{"error": "..."}``, Gemini a list); reading the raw body gives the server's own words in every one-line error.
- one async code path for both entry points, and the SDK is not needed at all (httpx is what it runs on).

Retries: connect errors and timeouts, connections broken mid-body, malformed replies (invalid or truncated JSON,
empty ``choices``, ``content: null``), 408, 429 and 500/502/503/504, with exponential backoff and jitter, or exactly
the server's ``Retry-After`` (seconds or an HTTP date) when it sends one; a wait that would pass the deadline ends
the query at once. Other statuses (400, 401, 403, 404, 422...) raise at once: retrying cannot fix them. When every
attempt failed to connect (nobody listening), the error is ``LLMConnectionError``, so callers can stop at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import math
import os
import random
import ssl
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

import httpx

from robot_rl.llm.cache import ResponseCache, request_key
from robot_rl.llm.config import LLMConfig
from robot_rl.llm.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    one_line,
)
from robot_rl.llm.messages import Message

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses retried (with the server's ``Retry-After`` where it sends one)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """One chat completion."""

    content: str
    """``choices[0].message.content``."""
    model: str
    """The model name the server reported (the configured name when it reported none)."""
    prompt_tokens: int = 0
    """Token counts as the server reported them (0 where it reported none)."""
    completion_tokens: int = 0
    finish_reason: str | None = None
    """``"stop"``, ``"length"`` (cut at ``max_tokens``)..."""
    attempts: int = 1
    """HTTP requests this reply took (1: the first try worked; 0: answered from the cache)."""
    elapsed_s: float = 0.0
    """From the first request to the complete reply (backoff included)."""
    cached: bool = False
    """Answered from the response cache (nothing was sent, no tokens were paid)."""


@dataclass(frozen=True)
class Usage:
    """A client's running totals."""

    requests: int
    """HTTP requests sent (every attempt, failed ones included)."""
    replies: int
    """Replies received and accepted (cache hits excluded)."""
    cache_hits: int
    prompt_tokens: int
    """Tokens of accepted replies (cache hits excluded: they cost nothing)."""
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class _Retry:
    """A transient failure of one attempt: why, and the server's ``Retry-After`` in seconds if it sent one."""

    reason: str
    retry_after: float | None = None
    connect: bool = False
    """The connection itself failed (refused, unknown host, connect timeout): nothing reached a server."""


@dataclass
class _Progress:
    """How far the current attempt got, for the deadline message."""

    phase: str = "waiting for the reply headers"
    received: int = 0
    expected: str | None = None

    def describe(self) -> str:
        if self.phase == "reading the body":
            of = f" of {self.expected}" if self.expected else ""
            return f"reading the body, {self.received}{of} bytes received"
        return self.phase


@dataclass
class _LoopState:
    """What belongs to one event loop: the connection pool and the concurrency limit."""

    http: httpx.AsyncClient
    semaphore: asyncio.Semaphore


class _RateLimiter:
    """Evenly spaced request slots, ``per_minute`` a minute, shared by every thread and event loop."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the next slot; returns the seconds to wait for it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now


def parse_retry_after(headers: httpx.Headers | dict[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date) or ``retry-after-ms``; ``None`` when
    absent or unreadable."""
    h = httpx.Headers(headers)
    ms = h.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    text = (h.get("retry-after") or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def server_message(raw: bytes) -> str:
    """The server's own error message from an error body (OpenAI, vLLM, SGLang, Ollama and Gemini shapes), else the
    body's text; one line, at most 300 characters."""
    text = raw.decode("utf-8", "replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        return one_line(text)
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return one_line(err)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if err.get(key):
                    return one_line(str(err[key]))
    return one_line(text)


def _parse_completion(raw: bytes, model: str) -> Reply | _Retry:
    """A 2xx body as a ``Reply`` (attempts and time filled in later), or why it is malformed."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return _Retry(f"malformed reply: invalid JSON ({len(raw)} bytes; {one_line(str(e), 80)})")
    if not isinstance(data, dict):
        return _Retry(f"malformed reply: the JSON body is a {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        said = server_message(raw) if "error" in data else ""
        return _Retry("malformed reply: no choices" + (f" (server says: {said})" if said else ""))
    first: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
    message: dict[str, Any] = first["message"] if isinstance(first.get("message"), dict) else {}
    content = message.get("content")
    finish = first.get("finish_reason")
    if isinstance(content, list):  # some servers send content as parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        why = f"content is {json.dumps(content)}"
        extra = [f"finish_reason={finish}"] if finish else []
        if message.get("refusal"):
            extra.append(f"refusal: {one_line(str(message['refusal']), 120)}")
        return _Retry(f"malformed reply: choices[0].message.{why}" + (f" ({'; '.join(extra)})" if extra else ""))
    usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}

    def count(key: str) -> int:
        value = usage.get(key)
        return int(value) if isinstance(value, int | float) and value >= 0 else 0

    return Reply(content=content, model=str(data.get("model") or model), prompt_tokens=count("prompt_tokens"),
                 completion_tokens=count("completion_tokens"),
                 finish_reason=finish if isinstance(finish, str) else None)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code: in a fresh event loop, or, when this thread is already
    running one (a notebook, an async app), in a fresh loop on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="robot_rl-llm") as pool:
        return pool.submit(asyncio.run, coro).result()


class LLMClient:
    """Chat completions from one OpenAI-compatible endpoint, with retries, a per-query deadline, a concurrency
    limit, an optional rate limit and an optional response cache.

    ``await client.achat(messages)`` from async code (connections are pooled per event loop; ``await
    client.aclose()`` when that loop is done with the client); ``client.chat(messages)`` from sync code (one fresh
    loop and connection per call). ``client.usage`` holds running totals; ``client.close()`` closes the cache.
    """

    def __init__(self, config: LLMConfig, limiter: Any = None) -> None:
        """``limiter``: request slots shared beyond this process (``reserve() -> seconds to wait``, as ``scale.label``'s
        Ray actor); default: ``config.requests_per_minute`` here."""
        self.config = config
        self._api_key = config.api_key()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "User-Agent": "robot_rl-llm"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._where = f"POST {config.url} (model '{config.model}')"
        self._limiter = limiter or (_RateLimiter(config.requests_per_minute) if config.requests_per_minute else None)
        self._cache = ResponseCache(config.cache_path) if config.cache_path else None
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._ssl_context: ssl.SSLContext | None = None
        self._random = random.Random()
        self._counts = {"requests": 0, "replies": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # -- public API -------------------------------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        """Running totals since the client was made."""
        with self._lock:
            return Usage(**self._counts)

    def chat(self, messages: Sequence[Message]) -> Reply:
        """Send ``messages``, return the reply (blocking). Raises ``LLMRequestError`` / ``LLMAuthError`` when the
        server refuses the request, ``LLMUnavailableError`` / ``LLMTimeoutError`` when no usable reply came within
        the retry budget and deadline."""
        return run_sync(self._chat_once(messages))

    async def achat(self, messages: Sequence[Message]) -> Reply:
        """``chat`` for async code; at most ``max_concurrency`` requests of this event loop are in flight at once."""
        body = self.request_body(messages)
        try:
            payload = json.dumps(body, ensure_ascii=False).encode()
        except (TypeError, ValueError) as e:
            raise TypeError(f"{self._where}: the messages are not JSON-serializable: {e}") from e
        key = None
        if self._cache is not None:
            key = request_key(body)
            hit = self._cache.get(key)
            if hit is not None:
                self._add(cache_hits=1)
                return Reply(**{**hit, "attempts": 0, "elapsed_s": 0.0, "cached": True})
        state = self._state()
        async with state.semaphore:
            reply = await self._request(state.http, payload)
        self._add(replies=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        if self._cache is not None and key is not None:
            stored = asdict(reply)
            for transient in ("attempts", "elapsed_s", "cached"):
                stored.pop(transient)
            self._cache.put(key, self.config.model, stored)
        return reply

    def request_body(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The JSON body sent for ``messages`` (also what the cache key is computed from)."""
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "messages": list(messages), "temperature": cfg.temperature}
        if cfg.max_tokens is not None:
            body["max_tokens"] = cfg.max_tokens
        body.update(cfg.extra_body)
        body["stream"] = False
        return body

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop (call it before that loop ends)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None:
            await state.http.aclose()

    def close(self) -> None:
        """Close the response cache. Pools of event loops that are still open are closed by their ``aclose``."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

    # -- internals --------------------------------------------------------------------------------------------------

    async def _chat_once(self, messages: Sequence[Message]) -> Reply:
        try:
            return await self.achat(messages)
        finally:
            await self.aclose()

    def _add(self, **counts: int) -> None:
        with self._lock:
            for key, n in counts.items():
                self._counts[key] += n

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                cfg = self.config
                if self._ssl_context is None:  # made once: loading the CA bundle takes ~50 ms
                    self._ssl_context = httpx.create_ssl_context()
                http = httpx.AsyncClient(
                    verify=self._ssl_context,
                    timeout=httpx.Timeout(None, connect=cfg.connect_timeout_s),  # the deadline bounds the rest
                    limits=httpx.Limits(max_connections=cfg.max_concurrency,
                                        max_keepalive_connections=cfg.max_concurrency),
                    follow_redirects=False)
                state = _LoopState(http, asyncio.Semaphore(cfg.max_concurrency))
                self._states[loop] = state
            return state

    def _backoff(self, retry: int) -> float:
        cfg = self.config
        return min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (retry - 1)) * self._random.uniform(0.5, 1.0)

    async def _request(self, http: httpx.AsyncClient, payload: bytes) -> Reply:
        """Attempts until a usable reply, a non-retryable status, the retry budget or the deadline."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        if self._limiter is not None:
            await asyncio.sleep(self._limiter.reserve())
        start = loop.time()
        deadline = start + cfg.deadline_s
        last = ""
        attempt = 0
        never_connected = True
        while True:
            attempt += 1
            self._add(requests=1)
            progress = _Progress()
            try:
                async with asyncio.timeout_at(deadline):
                    outcome = await self._attempt(http, payload, progress)
            except TimeoutError:
                earlier = f"; before that: {last}" if last else ""
                raise LLMTimeoutError(f"{self._where}: no complete reply within the {cfg.deadline_s:g} s deadline "
                                      f"(attempt {attempt}, {progress.describe()}{earlier})") from None
            if isinstance(outcome, Reply):
                return Reply(**{**asdict(outcome), "attempts": attempt, "elapsed_s": loop.time() - start})
            last = outcome.reason
            never_connected = never_connected and outcome.connect
            if attempt > cfg.max_retries:
                error = LLMConnectionError if never_connected else LLMUnavailableError
                raise error(f"{self._where}: gave up after {attempt} attempts in {loop.time() - start:.1f} s "
                            f"(max_retries={cfg.max_retries}); last: {last}")
            if outcome.retry_after is not None:
                delay, why = outcome.retry_after, f"Retry-After {outcome.retry_after:g} s"
            else:
                delay, why = self._backoff(attempt), "backoff"
            if self._limiter is not None:
                wait = self._limiter.reserve()
                if wait > delay:
                    delay, why = wait, f"rate limit ({cfg.requests_per_minute:g}/min)"
            remaining = deadline - loop.time()
            if delay >= remaining:
                raise LLMTimeoutError(f"{self._where}: {last}; waiting {delay:.1f} s ({why}) would pass the "
                                      f"{cfg.deadline_s:g} s deadline ({max(remaining, 0.0):.1f} s left after "
                                      f"{attempt} attempts)")
            await asyncio.sleep(delay)

    async def _attempt(self, http: httpx.AsyncClient, payload: bytes, progress: _Progress) -> Reply | _Retry:
        """One HTTP request: a reply, or a transient failure to retry; raises on a non-retryable one."""
        cfg = self.config
        try:
            async with http.stream("POST", cfg.url, content=payload, headers=self._headers) as response:
                progress.phase = "reading the body"
                progress.expected = response.headers.get("content-length")
                chunks = []
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    progress.received += len(chunk)
                status, headers, raw = response.status_code, response.headers, b"".join(chunks)
        except httpx.ConnectTimeout:
            return _Retry(f"connect timeout ({cfg.connect_timeout_s:g} s)", connect=True)
        except httpx.ConnectError as e:
            return _Retry(f"cannot connect ({_describe(e)}{_os_reason(e)})", connect=True)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as e:
            raise LLMRequestError(f"{self._where}: the request cannot be sent: {_describe(e)}") from e
        except httpx.TransportError as e:
            if progress.phase == "reading the body":
                return _Retry(f"connection broken mid-body after {progress.received} bytes ({_describe(e)})")
            return _Retry(f"connection broken before the reply ({_describe(e)})")
        except httpx.DecodingError as e:
            return _Retry(f"malformed reply: the body cannot be decoded ({_describe(e)})")
        return self._classify(status, headers, raw)

    def _classify(self, status: int, headers: httpx.Headers, raw: bytes) -> Reply | _Retry:
        cfg = self.config
        if 200 <= status < 300:
            return _parse_completion(raw, cfg.model)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        said = server_message(raw) if raw else ""
        what = f"{status} {phrase}".strip() + (f": {said}" if said else "")
        if status in RETRY_STATUSES:
            return _Retry(what, parse_retry_after(headers))
        if status in (401, 403):
            key_state = "set" if self._api_key else "not set or empty"
            raise LLMAuthError(f"{self._where}: {what} (the API key is read from ${cfg.api_key_env}, which is "
                               f"{key_state})", status)
        if 300 <= status < 400:
            raise LLMRequestError(f"{self._where}: {what}, redirected to '{headers.get('location', '?')}' (check "
                                  f"base_url '{cfg.base_url}')", status)
        hint = f" (check base_url '{cfg.base_url}', usually ending in /v1, and the model name)" if status == 404 else ""
        raise LLMRequestError(f"{self._where}: {what}{hint}", status)


def _describe(e: BaseException) -> str:
    text = one_line(str(e), 160)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _os_reason(e: BaseException) -> str:
    """``": Connection refused"`` from the OS error under an httpx error (anyio words a refused connection as "All
    connection attempts failed"); empty when the message already says it or there is none."""
    cause = e.__cause__ or e.__context__
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno)
            return "" if reason in str(e) else f": {reason}"
        cause = cause.__cause__ or cause.__context__
    return ""
