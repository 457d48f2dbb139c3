"""The VLM success labeler (one frame, yes/no) against the local replay server, through the label store."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_rl.llm import LLMClient, LLMUnavailableError
from robot_rl.rewards.base import CANT_TELL, Segment, SegmentRef
from robot_rl.rewards.labeling import label_queries
from robot_rl.rewards.store import LabelStore
from robot_rl.rewards.success.labels import (
    FAILURE,
    SUCCESS,
    SuccessError,
    SuccessQuery,
    UnparseableSuccessAnswer,
    VLMSuccessLabeler,
    available_success_prompts,
    load_success_prompt,
    parse_success_answer,
)
from tests.llm.replay_server import Behaviour, RecordedRequest, ReplayServer, error, fast_config, reply

TASK = "open the drawer"


class FakeFrames:
    """Duck-typed like FrameSource: a flat frame whose brightness is the segment's first state value."""

    def __init__(self, camera: str = "corner", size: tuple[int, int] = (6, 8)) -> None:
        self.camera, self.size = camera, size

    def identity(self) -> dict[str, Any]:
        return {"camera": self.camera, "size": list(self.size)}

    def last_frame(self, segment: Segment) -> np.ndarray:
        return np.full((*self.size, 3), int(segment.states[-1, 0]), dtype=np.uint8)


FRAMES = FakeFrames()


def query(brightness: int, step: int = 0) -> SuccessQuery:
    states = np.array([[brightness, 0.0]], np.float32)
    seg = Segment(SegmentRef("demo_0", step, 1), states, np.zeros((1, 1), np.float32), np.full(1, np.nan, np.float32))
    return SuccessQuery(seg, seg, TASK, FRAMES)  # type: ignore[arg-type]


def judge(request: RecordedRequest) -> Behaviour:
    """A fake VLM: a bright frame (> 128) shows the task done."""
    images = request.images()
    assert len(images) == 1, "one frame per request"
    assert TASK in request.text
    done = int(images[0].mean()) > 128
    return reply(f"The drawer looks {'open' if done else 'closed'}.\nAnswer: {'yes' if done else 'no'}")


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(responder=judge) as s:
        yield s


def labeler_for(server: ReplayServer, **kw: Any) -> VLMSuccessLabeler:
    return VLMSuccessLabeler(LLMClient(fast_config(server)), frames_identity=FRAMES.identity(), **kw)


@pytest.mark.parametrize(("text", "answer"), [
    ("Answer: yes", "yes"), ("answer: No", "no"), ("**Answer:** unsure", "unsure"),
    ("The drawer is open.\nAnswer: yes.", "yes"),
    ("yes", "yes"), ("  NO ", "no"), ("Final answer: no", "no"),
])
def test_parse_success_answer_accepts(text: str, answer: str) -> None:
    assert parse_success_answer(text) == answer


@pytest.mark.parametrize("text", ["yes or no", "Answer: yes or no", "Answer: maybe", "", "The drawer is open.",
                                  "Answer: yes\nAnswer: no", "Answer: yes   if the task is fully achieved"])
def test_parse_success_answer_rejects(text: str) -> None:
    with pytest.raises(UnparseableSuccessAnswer):
        parse_success_answer(text)


def test_shipped_success_prompt_loads() -> None:
    assert "success-v1" in available_success_prompts()
    prompt = load_success_prompt("success-v1")
    assert "{task}" in prompt.question and "Answer: yes" in prompt.question
    with pytest.raises(SuccessError, match="unknown success prompt version 'success-v9'.*success-v1"):
        load_success_prompt("success-v9")


def test_vlm_success_labels_through_the_store_are_asked_once(server: ReplayServer, tmp_path: Path) -> None:
    queries = [query(b, i) for i, b in enumerate((10, 200, 30, 250, 90))]
    with LabelStore(tmp_path / "s.sqlite") as store:
        result = label_queries(queries, labeler_for(server), store, "d.h5")
        assert [lb.value for lb in result.labels] == [FAILURE, SUCCESS, FAILURE, SUCCESS, FAILURE]
        assert server.count == 5 and not server.duplicates()
        prov = result.labels[1].provenance
        assert prov["labeler"] == "success-vlm" and prov["query"] == "success"
        assert prov["prompt_version"] == "success-v1"
        assert prov["answer"] == "yes" and prov["tokens"]["prompt"] > 0
        again = label_queries(queries, labeler_for(server), store, "d.h5")
        assert again.asked == 0 and server.count == 5
        rows = store.labels()
        assert {r.labeler for r in rows} == {"success-vlm"} and all(r.identity["query"] == "success" for r in rows)


def test_unreadable_unsure_and_unavailable_replies(server: ReplayServer) -> None:
    labeler = labeler_for(server, max_parse_retries=1)
    server.responder = lambda r: "yes or no"  # unreadable, re-asked once, then can't tell
    [(_, label)] = list(labeler.label([query(200)]))
    assert label.value is CANT_TELL and label.provenance["reason"] == "unparseable" and server.count == 2
    assert len(label.provenance["rejected"]) == 1
    server.reset()
    server.responder = lambda r: "I cannot see the drawer.\nAnswer: unsure"
    [(_, label)] = list(labeler_for(server).label([query(200)]))
    assert label.value is CANT_TELL and label.provenance["reason"] == "unsure"
    server.reset()
    assert not math.isnan(label.provenance["time_s"])
    server.reset()
    server.responder = lambda r: error(503)
    with pytest.raises(LLMUnavailableError, match="503"):  # no reply is no answer: nothing to store
        list(labeler_for(server).label([query(200)]))


def test_identity_depends_on_frames_and_prompt(server: ReplayServer) -> None:
    a = labeler_for(server).identity()
    b = VLMSuccessLabeler(LLMClient(fast_config(server)), frames_identity={"camera": "corner", "size": [64, 64]}
                          ).identity()
    assert a != b and a["query"] == "success" and a["labeler"] == "success-vlm"
    with pytest.raises(ValueError, match="frames_identity"):
        list(VLMSuccessLabeler(LLMClient(fast_config(server)), frames_identity={"camera": "x", "size": [1, 1]}
                               ).label([query(1)]))
