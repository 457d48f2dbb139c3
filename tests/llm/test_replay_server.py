"""The replay server itself: dispatch order, recordings, counting, and a prompt stop."""

from __future__ import annotations

import threading
import time

import pytest

from robot_rl.llm import LLMClient, LLMRequestError, LLMTimeoutError, user_message
from tests.llm.replay_server import Recording, ReplayServer, body_key, error, fast_config, reply


def test_dispatch_order_and_counts(replay_server: ReplayServer) -> None:
    replay_server.responder = lambda r: "responder" if "ask responder" in r.last_text else None
    replay_server.default = reply("default")
    client = LLMClient(fast_config(replay_server))
    replay_server.script("scripted")
    assert client.chat([user_message("ask responder")]).content == "scripted"  # the queue comes first
    assert client.chat([user_message("ask responder")]).content == "responder"
    assert client.chat([user_message("anything")]).content == "default"
    assert replay_server.count == 3
    key = replay_server.requests[0].key
    assert key == body_key(client.request_body([user_message("ask responder")]))
    assert replay_server.count_for(key) == 2 and replay_server.duplicates() == {key: 2}
    replay_server.reset()
    assert replay_server.count == 0 and replay_server.duplicates() == {}


def test_nothing_matches_is_a_clear_400(replay_server: ReplayServer) -> None:
    with pytest.raises(LLMRequestError, match="400 Bad Request: replay server: no scripted answer"):
        LLMClient(fast_config(replay_server)).chat([user_message("hi")])


def test_recording_answers_cycle() -> None:
    recording = Recording([
        {"contains": ["weather"], "answers": ["sunny", {"content": "rainy", "completion_tokens": 2}]},
        {"contains": [], "answers": ["fallback"]},
    ])
    with ReplayServer(recording=recording) as server:
        client = LLMClient(fast_config(server))
        got = [client.chat([user_message("the weather?")]) for _ in range(3)]
        assert [r.content for r in got] == ["sunny", "rainy", "sunny"] and got[1].completion_tokens == 2
        assert client.chat([user_message("other")]).content == "fallback"


def test_shipped_recording_loads() -> None:
    recording = Recording.load("rl-vlm-f-v1")
    assert len(recording.entries) == 2


def test_stop_is_prompt_while_a_reply_is_delayed() -> None:
    server = ReplayServer(default=reply("late", delay_s=30)).start()
    client = LLMClient(fast_config(server, deadline_s=20, max_retries=0))
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            client.chat([user_message("hi")])
        except Exception as e:
            outcome.append(e)

    worker = threading.Thread(target=ask)
    worker.start()
    while server.count == 0:
        time.sleep(0.01)
    start = time.monotonic()
    server.stop()
    worker.join(timeout=5)
    assert time.monotonic() - start < 2 and not worker.is_alive()
    assert outcome and not isinstance(outcome[0], LLMTimeoutError)  # the connection closed; not a 20 s wait


def test_error_helper_sets_retry_after() -> None:
    b = error(429, retry_after="2")
    assert (b.status, b.retry_after) == (429, "2")
