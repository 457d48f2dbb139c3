"""LLMClient against the local replay server: replies, token counts, retries, deadlines, limits, cache, images."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from robot_rl.llm import (
    LLMAuthError,
    LLMClient,
    LLMConfig,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    Usage,
    decode_image_part,
    image_part,
    parse_retry_after,
    server_message,
    user_message,
)
from tests.llm.replay_server import (
    MODEL,
    TEST_KEY_ENV,
    ReplayServer,
    error,
    fast_config,
    fault,
    reply,
    unresponsive_endpoint,
)

HI = [user_message("hi")]


def one_line_naming(message: str, url: str) -> None:
    assert "\n" not in message
    assert url in message


# -- plain replies ----------------------------------------------------------------------------------------------------


def test_reply_tokens_and_request_body(replay_server: ReplayServer) -> None:
    replay_server.script(reply("hello", prompt_tokens=5, completion_tokens=3),
                         reply("again", prompt_tokens=2, completion_tokens=1))
    client = LLMClient(fast_config(replay_server, max_tokens=64, extra_body={"seed": 7}))
    first = client.chat(HI)
    assert (first.content, first.prompt_tokens, first.completion_tokens) == ("hello", 5, 3)
    assert first.attempts == 1 and not first.cached and first.finish_reason == "stop" and first.model == MODEL
    assert client.chat(HI).content == "again"
    assert client.usage == Usage(requests=2, replies=2, cache_hits=0, prompt_tokens=7, completion_tokens=4)
    assert client.usage.total_tokens == 11
    request = replay_server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.body == {"model": MODEL, "messages": HI, "temperature": 0.0, "max_tokens": 64, "seed": 7,
                            "stream": False}
    assert "authorization" not in {k.lower() for k in request.headers}  # no key set: no header


def test_api_key_comes_from_the_named_env_var(replay_server: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_KEY_ENV, "sk-test-123")
    replay_server.script("ok")
    LLMClient(fast_config(replay_server)).chat(HI)
    headers = {k.lower(): v for k, v in replay_server.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer sk-test-123"


def test_async_chat_and_sync_chat_inside_a_running_loop(replay_server: ReplayServer) -> None:
    replay_server.default = reply("fine")
    client = LLMClient(fast_config(replay_server))

    async def main() -> list[str]:
        replies = await asyncio.gather(*(client.achat([user_message(f"q{i}")]) for i in range(3)))
        inside = client.chat(HI)  # sync entry point called from async code: runs on a helper thread
        await client.aclose()
        return [r.content for r in replies] + [inside.content]

    assert asyncio.run(main()) == ["fine"] * 4
    assert replay_server.count == 4


# -- transient failures: retried ------------------------------------------------------------------------------------

TRANSIENT = [error(500), error(502), error(503), error(504), error(429), fault("reset_mid_body"),
             fault("truncated_json"), fault("empty_choices"), fault("content_null")]
TRANSIENT_IDS = ["500", "502", "503", "504", "429", "reset", "truncated", "empty_choices", "content_null"]


@pytest.mark.parametrize("failure", TRANSIENT, ids=TRANSIENT_IDS)
def test_transient_failures_are_retried(replay_server: ReplayServer, failure: object) -> None:
    replay_server.script(failure, failure, "recovered")  # type: ignore[arg-type]
    client = LLMClient(fast_config(replay_server, max_retries=2))
    answer = client.chat(HI)
    assert answer.content == "recovered" and answer.attempts == 3
    assert replay_server.count == 3
    assert client.usage.requests == 3 and client.usage.replies == 1
    assert client.usage.prompt_tokens == 11  # only the accepted reply's tokens


@pytest.mark.parametrize(("failure", "says"), [
    (error(503, "engine overloaded"), "503 Service Unavailable: engine overloaded"),
    (fault("reset_mid_body"), "connection broken mid-body"),
    (fault("truncated_json"), "malformed reply: invalid JSON"),
    (fault("empty_choices"), "malformed reply: no choices"),
    (fault("content_null"), "malformed reply: choices[0].message.content is null"),
], ids=["503", "reset", "truncated", "empty_choices", "content_null"])
def test_persistent_failure_gives_a_clear_one_line_error(replay_server: ReplayServer, failure: object,
                                                         says: str) -> None:
    replay_server.default = failure  # type: ignore[assignment]
    client = LLMClient(fast_config(replay_server, max_retries=2))
    with pytest.raises(LLMUnavailableError) as caught:
        client.chat(HI)
    message = str(caught.value)
    one_line_naming(message, replay_server.base_url + "/chat/completions")
    assert "gave up after 3 attempts" in message and says in message and MODEL in message
    assert replay_server.count == 3


def test_backoff_grows_exponentially_with_jitter(replay_server: ReplayServer) -> None:
    replay_server.default = error(500)
    client = LLMClient(fast_config(replay_server, max_retries=3, backoff_base_s=0.08, backoff_max_s=10))
    with pytest.raises(LLMUnavailableError):
        client.chat(HI)
    times = [r.time for r in replay_server.requests]
    gaps = np.diff(times)
    for k, gap in enumerate(gaps):  # retry k+1 waits base * 2**k * U(0.5, 1)
        nominal = 0.08 * 2**k
        assert 0.5 * nominal - 0.01 <= gap <= nominal + 0.15, (k, gaps)
    assert gaps[2] > gaps[0]


# -- 429 and Retry-After ----------------------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(replay_server: ReplayServer) -> None:
    replay_server.script(error(429, "slow down", retry_after="0.4"), "ok")
    client = LLMClient(fast_config(replay_server))
    assert client.chat(HI).attempts == 2
    first, second = replay_server.requests
    assert 0.38 <= second.time - first.time < 1.5  # the server's wait, not the 0.01 s backoff


def test_429_retry_after_http_date(replay_server: ReplayServer) -> None:
    past = email.utils.format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
    replay_server.script(error(429, retry_after=past), "ok")
    assert LLMClient(fast_config(replay_server)).chat(HI).content == "ok"


def test_retry_after_beyond_the_deadline_fails_at_once(replay_server: ReplayServer) -> None:
    replay_server.default = error(429, "quota", retry_after="60")
    client = LLMClient(fast_config(replay_server, deadline_s=3))
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        client.chat(HI)
    assert time.monotonic() - start < 1.0
    message = str(caught.value)
    one_line_naming(message, replay_server.base_url)
    assert "429 Too Many Requests: quota" in message and "Retry-After 60 s" in message and "3 s deadline" in message
    assert replay_server.count == 1


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"Retry-After": "-4"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    later = email.utils.format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": later}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


# -- not retried --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind", "says"), [
    (400, LLMRequestError, "400 Bad Request: nope"),
    (401, LLMAuthError, f"401 Unauthorized: nope (the API key is read from ${TEST_KEY_ENV}, which is not set"),
    (403, LLMAuthError, f"403 Forbidden: nope (the API key is read from ${TEST_KEY_ENV}"),
    (404, LLMRequestError, "404 Not Found: nope (check base_url"),
    (422, LLMRequestError, "422 Unprocessable"),
])
def test_client_errors_raise_at_once(replay_server: ReplayServer, status: int, kind: type[Exception],
                                     says: str) -> None:
    replay_server.default = error(status, "nope")
    client = LLMClient(fast_config(replay_server, max_retries=5))
    with pytest.raises(kind) as caught:
        client.chat(HI)
    assert isinstance(caught.value, LLMRequestError) and caught.value.status == status
    message = str(caught.value)
    one_line_naming(message, replay_server.base_url + "/chat/completions")
    assert says in message
    assert replay_server.count == 1


def test_server_message_shapes() -> None:
    assert server_message(b'{"error": {"message": "Invalid key", "type": "auth"}}') == "Invalid key"  # OpenAI
    assert server_message(b'{"object": "error", "message": "model x not found", "code": 404}') == "model x not found"
    assert server_message(b'{"error": "model \\"llava\\" not found"}') == 'model "llava" not found'  # Ollama
    assert server_message(b'[{"error": {"code": 400, "message": "API key not valid"}}]') == "API key not valid"
    assert server_message(b"<html>\n502 Bad Gateway\n</html>") == "<html> 502 Bad Gateway </html>"


# -- deadlines and connections ----------------------------------------------------------------------------------------


def test_slow_drip_is_cut_at_the_total_deadline(replay_server: ReplayServer) -> None:
    # Every chunk arrives within 0.15 s, so a per-read timeout would never fire; the body would take ~3 s.
    replay_server.default = reply("x" * 400, drip_s=0.15, drip_chunks=20)
    client = LLMClient(fast_config(replay_server, deadline_s=0.6))
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        client.chat(HI)
    assert 0.55 <= time.monotonic() - start < 1.2
    message = str(caught.value)
    one_line_naming(message, replay_server.base_url)
    assert "no complete reply within the 0.6 s deadline" in message and "reading the body" in message
    assert replay_server.count == 1


def test_delay_past_the_deadline(replay_server: ReplayServer) -> None:
    replay_server.default = reply("late", delay_s=5)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError, match="waiting for the reply headers"):
        LLMClient(fast_config(replay_server, deadline_s=0.5)).chat(HI)
    assert time.monotonic() - start < 1.0


def test_connect_timeout_gives_up_within_the_deadline() -> None:
    with unresponsive_endpoint() as url:
        client = LLMClient(fast_config(url, connect_timeout_s=0.2, deadline_s=1.0, max_retries=50))
        start = time.monotonic()
        with pytest.raises(LLMTimeoutError) as caught:
            client.chat(HI)
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 1.6
    message = str(caught.value)
    one_line_naming(message, url)
    assert "1 s deadline" in message and "connect timeout (0.2 s)" in message


def test_connect_timeout_retries_run_out() -> None:
    with unresponsive_endpoint() as url:
        client = LLMClient(fast_config(url, connect_timeout_s=0.2, deadline_s=5.0, max_retries=1))
        start = time.monotonic()
        with pytest.raises(LLMUnavailableError, match=r"gave up after 2 attempts .*connect timeout \(0.2 s\)"):
            client.chat(HI)
        assert time.monotonic() - start < 1.5
    assert client.usage.requests == 2


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMClient(fast_config(f"http://127.0.0.1:{port}/v1", max_retries=1))
    with pytest.raises(LLMUnavailableError, match=rf"127.0.0.1:{port}/v1/chat/completions.*cannot connect"):
        client.chat(HI)


# -- concurrency and rate limits ------------------------------------------------------------------------------------


def test_concurrency_limit(replay_server: ReplayServer) -> None:
    replay_server.default = reply("ok", delay_s=0.2)
    client = LLMClient(fast_config(replay_server, max_concurrency=3))

    async def main() -> None:
        await asyncio.gather(*(client.achat([user_message(f"q{i}")]) for i in range(9)))
        await client.aclose()

    start = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - start
    assert replay_server.max_in_flight == 3
    assert 0.55 <= elapsed < 1.5  # 3 waves of 0.2 s, not 9 (1.8 s) nor 1 (0.2 s)


def test_rate_limit_spaces_requests(replay_server: ReplayServer) -> None:
    replay_server.default = reply("ok")
    client = LLMClient(fast_config(replay_server, requests_per_minute=600))  # one per 0.1 s

    async def main() -> None:
        await asyncio.gather(*(client.achat([user_message(f"q{i}")]) for i in range(5)))
        await client.aclose()

    asyncio.run(main())
    times = sorted(r.time for r in replay_server.requests)
    gaps = np.diff(times)
    assert len(gaps) == 4 and times[-1] - times[0] >= 0.37 and gaps.min() >= 0.05, gaps


# -- cache ------------------------------------------------------------------------------------------------------------


def test_response_cache(tmp_path: Path, replay_server: ReplayServer) -> None:
    cache = str(tmp_path / "llm-cache.sqlite")
    replay_server.script(error(400, "bad"), reply("cached answer", prompt_tokens=9, completion_tokens=4))
    client = LLMClient(fast_config(replay_server, cache_path=cache))
    with pytest.raises(LLMRequestError):
        client.chat(HI)  # failures are not cached
    first = client.chat(HI)
    again = client.chat(HI)
    assert (first.cached, again.cached, again.attempts, again.content) == (False, True, 0, "cached answer")
    assert replay_server.count == 2
    assert client.usage == Usage(requests=2, replies=1, cache_hits=1, prompt_tokens=9, completion_tokens=4)
    client.close()
    # A new client on the same file, even on another server (the base URL is not part of the key), pays nothing.
    with ReplayServer() as other:
        reopened = LLMClient(fast_config(other, cache_path=cache))
        assert reopened.chat(HI).content == "cached answer" and other.count == 0
        other.script("fresh")
        assert reopened.chat([user_message("something else")]).content == "fresh" and other.count == 1
        reopened.close()


# -- messages and config ----------------------------------------------------------------------------------------------


def test_image_part_is_a_lossless_png_data_url(replay_server: ReplayServer) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    part = image_part(frame)
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    np.testing.assert_array_equal(decode_image_part(part), frame)
    replay_server.script("seen")
    LLMClient(fast_config(replay_server)).chat([user_message("what is this?", part)])
    (sent,) = replay_server.requests[0].images()
    np.testing.assert_array_equal(sent, frame)
    assert replay_server.requests[0].body["messages"][0]["content"][0] == {"type": "text", "text": "what is this?"}
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\].*float32 \[6, 9, 3\]"):
        image_part(frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \[6, 9\]"):
        image_part(frame[..., 0])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="base_url must start with http"):
        LLMConfig(model="m", base_url="localhost:8000/v1")
    with pytest.raises(ValueError, match="unknown LLMConfig field.*temprature"):
        LLMConfig.from_dict({"model": "m", "temprature": 0.5})
    with pytest.raises(ValueError, match="extra_body cannot set temperature"):
        LLMConfig(model="m", extra_body={"temperature": 1.0})
    cfg = LLMConfig.from_dict({"model": "m", "base_url": "http://h:1/v1/"})
    assert cfg.url == "http://h:1/v1/chat/completions"
    assert LLMConfig.from_dict(cfg.to_dict()) == cfg
