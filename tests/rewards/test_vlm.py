"""VLMLabeler (RL-VLM-F) against the local replay server, with synthetic segments and a fake frame source."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from robot_rl.llm import LLMAuthError, LLMClient, LLMConnectionError, LLMUnavailableError
from robot_rl.rewards.base import CANT_TELL, FIRST, SECOND, Label, Query, Segment, SegmentRef, query_key
from robot_rl.rewards.labelers.vlm import (
    DEFAULT_PROMPT,
    UnparseableAnswer,
    VLMLabeler,
    available_prompts,
    load_prompt,
    parse_answer,
)
from tests.llm.replay_server import (
    TEST_KEY_ENV,
    Behaviour,
    RecordedRequest,
    ReplayServer,
    error,
    fast_config,
    reply,
)

TASK = "open the drawer"


class FakeFrames:
    """Duck-typed like FrameSource: the last frame of a segment is a flat image whose brightness is the segment's
    last state's first value."""

    def __init__(self, camera: str = "corner", size: tuple[int, int] = (6, 8)) -> None:
        self.camera, self.size = camera, size

    def identity(self) -> dict[str, Any]:
        return {"camera": self.camera, "size": list(self.size)}

    def last_frame(self, segment: Segment) -> np.ndarray:
        return np.full((*self.size, 3), int(segment.states[-1, 0]), dtype=np.uint8)


FRAMES = FakeFrames()


def segment(brightness: int, episode: str = "demo_0", length: int = 1) -> Segment:
    states = np.zeros((length, 2), np.float32)
    states[-1, 0] = brightness
    return Segment(SegmentRef(episode, 0, length), states, np.zeros((length, 1), np.float32),
                   np.full(length, np.nan, np.float32))


def query(a: int, b: int, frames: Any = FRAMES) -> Query:
    return Query(segment(a, "demo_a"), segment(b, "demo_b"), TASK, frames)


def judge(request: RecordedRequest, delay_s: float = 0.0) -> Behaviour:
    """A fake VLM: stage 1 compares the two images' brightness (brighter = closer to the goal); stage 2 reads the
    verdict back out of the analysis it is given."""
    images = request.images()
    if images:
        a, b = (int(img.mean()) for img in images)
        closer = "Image 1" if a > b else "Image 2" if b > a else "neither"
        return reply(f"Image 1 has brightness {a}. Image 2 has brightness {b}. Verdict: {closer}.", delay_s=delay_s)
    verdict = re.search(r"Verdict: (Image 1|Image 2|neither)\.", request.last_text)
    assert verdict is not None, request.last_text
    answer = {"Image 1": "0", "Image 2": "1", "neither": "-1"}[verdict.group(1)]
    return reply(f"The analysis prefers {verdict.group(1)}.\nAnswer: {answer}", delay_s=delay_s)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(responder=judge) as s:
        yield s


def labeler_for(server: ReplayServer, **kw: Any) -> VLMLabeler:
    client_kw = {k: kw.pop(k) for k in list(kw) if k in ("max_retries", "max_concurrency", "deadline_s")}
    return VLMLabeler(LLMClient(fast_config(server, **client_kw)), frames_identity=FRAMES.identity(), **kw)


def run(labeler: VLMLabeler, queries: list[Query]) -> dict[int, Label]:
    out: dict[int, Label] = {}
    for i, label in labeler.label(queries):
        assert i not in out, f"index {i} yielded twice"
        json.dumps(label.provenance)  # stored as JSON
        out[i] = label
    assert sorted(out) == list(range(len(queries)))
    return out


# -- parsing ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "answer"), [
    ("Answer: 0", 0), ("answer: 1", 1), ("ANSWER: -1", -1),
    ("Image 2 shows the drawer open.\nAnswer: 1", 1),
    ("**Answer:** 0", 0), ("**Answer: -1**", -1), ("Final answer: 1.", 1), ("- Answer: 0", 0),
    ("Answer: 1\n\n(the second image is closer)", 1),
    ("0", 0), ("  -1 ", -1), ("`1`", 1), ("1.", 1),
])
def test_parse_answer_accepts(text: str, answer: int) -> None:
    assert parse_answer(text) == answer


@pytest.mark.parametrize("text", [
    "A or B", "0 or 1", "Answer: 0 or 1", "The first image is better.", "Image 1", "Answer: 2", "Answer: 01",
    "Answer: A", "", "10", "Answer: 0\nAnswer: 1", "Answer: 1\nAnswer: 1", "I would say 1 because image 2 is open.",
    "Answer: 1   if the task is better achieved in Image 2",
])
def test_parse_answer_rejects(text: str) -> None:
    with pytest.raises(UnparseableAnswer):
        parse_answer(text)


# -- prompts ----------------------------------------------------------------------------------------------------------


def test_shipped_prompts_load() -> None:
    assert DEFAULT_PROMPT in available_prompts()
    for version in available_prompts():
        prompts = load_prompt(version)
        assert prompts.version == version
        assert "{analysis}" in prompts.stage2_question and "{task}" in prompts.stage1_question
        for answer in ("Answer: 0", "Answer: 1", "Answer: -1"):
            assert answer in prompts.stage2_question


def test_unknown_prompt_version_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown VLM prompt version 'rl-vlm-f-v9'; available .*rl-vlm-f-v1"):
        load_prompt("rl-vlm-f-v9")


# -- identity ---------------------------------------------------------------------------------------------------------


def test_identity_has_model_prompt_temperature_frames_but_not_the_url() -> None:
    here = VLMLabeler(LLMClient(fast_config("http://127.0.0.1:1/v1")), frames_identity=FRAMES.identity())
    there = VLMLabeler(LLMClient(fast_config("http://10.0.0.7:8000/v1")), frames_identity=FRAMES.identity())
    ident = here.identity()
    assert ident == {"labeler": "vlm", "model": "replay-model", "prompt_version": "rl-vlm-f-v1", "temperature": 0.0,
                     "frames": {"camera": "corner", "size": [6, 8]}}
    assert "127.0.0.1" not in str(ident)
    assert ident == there.identity() and query_key(here, query(1, 2)) == query_key(there, query(1, 2))
    other_camera = VLMLabeler(here.client, frames_identity=FakeFrames("wrist").identity())
    assert query_key(other_camera, query(1, 2)) != query_key(here, query(1, 2))
    assert here.name == "vlm" and here.uses_images


def test_frames_must_match_the_identity(server: ReplayServer) -> None:
    labeler = labeler_for(server)
    with pytest.raises(ValueError, match=r"query 0: its frames are .*wrist.* frames_identity=frame_source.identity"):
        list(labeler.label([query(1, 2, FakeFrames("wrist"))]))
    with pytest.raises(ValueError, match="query 0: Query.frames is None"):
        list(labeler.label([query(1, 2, None)]))
    assert server.count == 0


# -- answers ----------------------------------------------------------------------------------------------------------


def test_labels_follow_the_images(server: ReplayServer) -> None:
    labels = run(labeler_for(server), [query(10, 200), query(200, 10)])
    assert labels[0].value == SECOND and labels[1].value == FIRST
    prov = labels[0].provenance
    assert prov["labeler"] == "vlm" and prov["model"] == "replay-model" and prov["prompt_version"] == "rl-vlm-f-v1"
    assert prov["stage1"] == "Image 1 has brightness 10. Image 2 has brightness 200. Verdict: Image 2."
    assert prov["stage2"].endswith("Answer: 1") and prov["answer"] == 1 and prov["stage2_rejected"] == []
    assert prov["tokens"] == {"prompt": 22, "completion": 14} and prov["requests"] == 2 and prov["attempts"] == 2
    assert prov["frames"] == FRAMES.identity() and prov["time_s"] >= 0 and prov["time"]
    assert server.count == 4 and server.duplicates() == {}  # no request paid twice

    stage1 = [r for r in server.requests if r.images()]
    stage2 = [r for r in server.requests if not r.images()]
    assert len(stage1) == 2 and len(stage2) == 2
    for request in stage1:  # two separate image parts in one user message, with the task sentence
        (message,) = request.messages
        assert [p["type"] for p in message["content"]].count("image_url") == 2
        assert TASK in request.text
        means = [int(img.mean()) for img in request.images()]
        assert sorted(means) == [10, 200] and all(img.shape == (6, 8, 3) for img in request.images())
    for request in stage2:  # text only, carrying the stage-1 analysis
        assert "Verdict: Image" in request.last_text and TASK in request.last_text


def test_recorded_answers(server: ReplayServer) -> None:
    with ReplayServer(recording="rl-vlm-f-v1") as recorded:
        (label,) = run(labeler_for(recorded), [query(0, 255)]).values()
    assert label.value == SECOND
    assert "drawer is pulled out about half way" in label.provenance["stage1"]


def test_minus_one_is_cant_tell(server: ReplayServer) -> None:
    server.responder = lambda r: "Both look the same." if r.images() else "No difference.\nAnswer: -1"
    (label,) = run(labeler_for(server), [query(10, 200)]).values()
    assert label.value is CANT_TELL
    assert label.provenance["answer"] == -1 and label.provenance["reason"] == "no difference"


def test_identical_frames_are_not_asked(server: ReplayServer) -> None:
    labels = run(labeler_for(server), [query(77, 77), query(5, 5)])
    assert server.count == 0
    for label in labels.values():
        assert label.value is CANT_TELL and label.provenance["reason"] == "identical"
        assert label.provenance["requests"] == 0


@pytest.mark.parametrize("bad", ["A or B", "0 or 1", "Image 2 looks closer to the goal."])
def test_unparseable_is_reasked_then_cant_tell(server: ReplayServer, bad: str) -> None:
    server.responder = lambda r: "Image 2 is closer." if r.images() else bad
    (label,) = run(labeler_for(server, max_parse_retries=2), [query(10, 200)]).values()
    assert label.value is CANT_TELL and label.provenance["reason"] == "unparseable"
    assert label.provenance["stage2"] == bad and label.provenance["stage2_rejected"] == [bad, bad]
    assert "no line 'Answer: 0'" in label.provenance["detail"]
    assert server.count == 4  # stage 1, then stage 2 asked 1 + 2 times
    reasks = server.requests[2:]
    for k, request in enumerate(reasks, start=1):  # each re-ask is the conversation so far plus a reminder
        roles = [m["role"] for m in request.messages]
        assert roles == ["user"] + ["assistant", "user"] * k
        assert "could not be read" in request.last_text
    assert server.duplicates() == {}


def test_unparseable_then_readable(server: ReplayServer) -> None:
    server.responder = lambda r: "Image 2 is closer." if r.images() else None
    server.script(reply("Image 2 is closer."), reply("I'd go with image 2."), reply("Answer: 1"))
    (label,) = run(labeler_for(server), [query(10, 200)]).values()
    assert label.value == SECOND and label.provenance["stage2_rejected"] == ["I'd go with image 2."]
    assert label.provenance["requests"] == 3


def test_no_reask_when_max_parse_retries_is_zero(server: ReplayServer) -> None:
    server.responder = lambda r: "desc" if r.images() else "maybe"
    (label,) = run(labeler_for(server, max_parse_retries=0), [query(10, 200)]).values()
    assert label.value is CANT_TELL and server.count == 2


def test_transport_failure_is_not_an_answer(server: ReplayServer) -> None:
    """A query that gets no usable reply is not yielded (so never stored); the others go on, then the run fails with
    the count and the first error."""
    def flaky(request: RecordedRequest) -> Behaviour:
        images = request.images()
        if images and int(images[0].mean()) == 66:
            return error(503, "engine overloaded", delay_s=0.2)  # after the other query has its answer
        return judge(request)

    server.responder = flaky
    got: dict[int, Label] = {}
    with pytest.raises(LLMUnavailableError) as caught:
        for i, label in labeler_for(server, max_retries=1).label([query(66, 1), query(1, 66)]):
            got[i] = label
    assert list(got) == [1] and got[1].value == SECOND
    message = str(caught.value)
    assert "\n" not in message and "1 of 2 queries got no usable reply" in message
    assert "503 Service Unavailable: engine overloaded" in message
    assert server.base_url in message and "gave up after 2 attempts" in message


def test_dead_endpoint_ends_the_run_at_once() -> None:
    """Nobody listening: the first query's connection error ends the run; no query is answered "can't tell"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMClient(fast_config(f"http://127.0.0.1:{port}/v1", max_retries=1))
    labeler = VLMLabeler(client, frames_identity=FRAMES.identity())
    start = time.monotonic()
    with pytest.raises(LLMConnectionError, match=rf"127.0.0.1:{port}/v1/chat/completions.*cannot connect"):
        list(labeler.label([query(10 + i, 200 - i) for i in range(20)]))
    assert time.monotonic() - start < 2.0


def test_auth_error_stops_the_run(server: ReplayServer) -> None:
    server.responder = None
    server.default = error(401, "Incorrect API key provided")
    got: list[int] = []
    with pytest.raises(LLMAuthError) as caught:
        for i, _ in labeler_for(server).label([query(3, 3), query(1, 2), query(4, 4), query(5, 6)]):
            got.append(i)
    message = str(caught.value)
    assert "401 Unauthorized: Incorrect API key provided" in message and f"${TEST_KEY_ENV}" in message
    assert server.base_url in message and "\n" not in message
    assert sorted(got) == [0, 2]  # the answers that needed no request came out before the error
    assert server.count <= 2  # not retried


def test_queries_run_concurrently(server: ReplayServer) -> None:
    delay = 0.1
    server.responder = lambda r: judge(r, delay_s=delay)
    queries = [query(10 + i, 200 - i) for i in range(8)]
    start = time.monotonic()
    labels = run(labeler_for(server, max_concurrency=4), queries)
    elapsed = time.monotonic() - start
    serial = len(queries) * 2 * delay
    assert elapsed < 0.8 * serial, (elapsed, serial)
    assert 2 <= server.max_in_flight <= 4
    assert all(label.value == SECOND for label in labels.values())


def test_every_index_exactly_once_with_mixed_outcomes(server: ReplayServer) -> None:
    def mixed(request: RecordedRequest) -> Behaviour:
        images = request.images()
        if images and int(images[0].mean()) == 99:
            return error(500, delay_s=0.2)
        if not images and "brightness 42" in request.text:
            return reply("who knows")
        return judge(request)

    server.responder = mixed
    plan = [(10, 20), (5, 5), (99, 1), (42, 43), (30, 20), (7, 7), (99, 3), (42, 1), (1, 2), (60, 50)]
    labels: dict[int, Label] = {}
    with pytest.raises(LLMUnavailableError, match="2 of 10 queries got no usable reply"):
        for i, label in labeler_for(server, max_retries=1, max_concurrency=3).label([query(a, b) for a, b in plan]):
            assert i not in labels
            labels[i] = label
    assert sorted(labels) == [0, 1, 3, 4, 5, 7, 8, 9]  # every index but the two without a reply, once
    reasons = Counter(label.provenance.get("reason", "answered") for label in labels.values())
    assert reasons == Counter({"answered": 4, "identical": 2, "unparseable": 2})
    assert [labels[i].value for i in (0, 4, 8, 9)] == [SECOND, FIRST, SECOND, FIRST]


def test_closing_the_generator_early_cancels_the_rest(server: ReplayServer) -> None:
    def fast_for_the_first(request: RecordedRequest) -> Behaviour:
        first = "has brightness 1." in request.last_text or any(int(i.mean()) == 1 for i in request.images()[:1])
        return judge(request, delay_s=0.05 if first else 1.0)

    server.responder = fast_for_the_first
    labels = labeler_for(server, max_concurrency=4).label([query(1, 2), query(3, 4), query(5, 6)])
    start = time.monotonic()
    index, _ = next(labels)
    labels.close()
    assert index == 0 and time.monotonic() - start < 1.5


def test_alabel_in_async_code_and_label_refuses_a_running_loop(server: ReplayServer) -> None:
    labeler = labeler_for(server)

    async def main() -> dict[int, Label]:
        with pytest.raises(RuntimeError, match="use 'async for i, label in labeler.alabel"):
            next(iter(labeler.label([query(1, 2)])))
        out = {i: label async for i, label in labeler.alabel([query(1, 2), query(2, 1)])}
        await labeler.client.aclose()
        return out

    labels = asyncio.run(main())
    assert labels[0].value == SECOND and labels[1].value == FIRST
