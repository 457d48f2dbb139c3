"""Prompt building, reply parsing and K samples per iteration through the LLM client (replay server as the LLM)."""

from __future__ import annotations

import pytest

from robot_rl.llm.errors import LLMRequestError
from robot_rl.rewards.codegen.gate import extract_code
from robot_rl.rewards.codegen.generate import SYSTEM_PROMPT, build_messages, generate, parse_sample
from tests.llm.replay_server import ReplayServer, error, fast_config
from tests.rewards.codegen_search import replies


def test_code_is_taken_from_the_one_block_in_prose() -> None:
    code = extract_code(replies.GOOD)
    assert code.startswith("def compute_reward(obs, action):") and code.endswith("{\"reach\": reach, \"pull\": pull}\n")
    assert "Here is" not in code and "dominates" not in code


def test_a_reply_that_is_only_code_is_accepted_without_a_fence() -> None:
    bare = "def compute_reward(obs, action):\n    r = obs['state'][:, 0]\n    return r, {'r': r}\n"
    assert extract_code(bare) == bare
    prose = "Sure:\ndef compute_reward(obs, action):\n    r = obs['state'][:, 0]\n    return r, {'r': r}\nDone."
    assert extract_code(prose).splitlines()[-1] == "    return r, {'r': r}"


@pytest.mark.parametrize(("reply", "reason"), [
    (replies.NO_CODE, "no code"),
    ("", "no code"),
    ("```python\nx = 1\n```", "defines no function compute_reward"),
    (replies.TWO_FUNCTIONS.replace("def helper", "def compute_reward"),
     "compute_reward is defined 2 times (lines 1, 4)"),
    (replies.GOOD + "\n\nOr:\n" + replies.GOOD_V2, "2 code blocks that define compute_reward"),
    (replies.SYNTAX_ERROR, "syntax error at line 2: '(' was never closed"),
    ("```python\ndef compute_reward(obs, **kwargs):\n    return obs, {}\n```",
     "the signature must be compute_reward(obs, action)"),
])
def test_replies_without_one_usable_function_fail_with_a_reason(reply: str, reason: str) -> None:
    sample = parse_sample(3, 1, reply)
    assert sample.code is None and reason in (sample.reason or "") and sample.id == "it3-s1"
    assert "\n" not in (sample.reason or "")


def test_helpers_are_kept_and_a_one_argument_signature_gets_action() -> None:
    sample = parse_sample(0, 0, replies.TWO_FUNCTIONS)
    assert sample.code is not None and sample.code.startswith("def helper(x):")
    sample = parse_sample(0, 1, "```python\ndef compute_reward(obs):\n    return obs['state'][:, 0]\n```")
    assert sample.code == "def compute_reward(obs, action):\n    return obs['state'][:, 0]\n"


def test_code_the_gate_rejects_is_a_failed_sample() -> None:
    sample = parse_sample(0, 0, replies.MALICIOUS)
    assert sample.code is None
    assert sample.reason is not None and sample.reason.startswith("rejected by the gate: line 2:")
    importing = "```python\nimport os\ndef compute_reward(obs, action):\n    return obs['state'][:, 0], {}\n```"
    reason = parse_sample(0, 1, importing).reason or ""
    assert "line 1" in reason and "import" in reason


def test_prompt_states_the_contract_and_carries_the_feedback() -> None:
    first = build_messages("class Task: ...")
    assert first[0]["role"] == "system" and first[0]["content"] == SYSTEM_PROMPT
    assert "compute_reward(obs, action)" in SYSTEM_PROMPT and "import nothing else" in SYSTEM_PROMPT
    assert "@torch.jit.script" in SYSTEM_PROMPT and "match" in SYSTEM_PROMPT
    assert "class Task: ..." in first[1]["content"] and "Feedback" not in first[1]["content"]
    later = build_messages("class Task: ...", "it0-s1: FAILED: boom")
    assert "it0-s1: FAILED: boom" in later[1]["content"] and "improved" in later[1]["content"]


def test_k_samples_are_distinct_concurrent_requests_and_failures_become_reasons() -> None:
    answers = {0: replies.GOOD, 1: replies.NO_CODE, 2: replies.MALICIOUS}
    with ReplayServer(responder=lambda r: answers[replies.sample_index(r.body, 3)]) as server:
        samples = generate(fast_config(server), build_messages("ctx"), 3, iteration=0)
        assert server.count == 3 and not server.duplicates()
    assert [s.index for s in samples] == [0, 1, 2]
    assert samples[0].code is not None and samples[0].model == "replay-model" and samples[0].completion_tokens == 7
    assert samples[1].code is None and "no code" in (samples[1].reason or "")
    assert samples[2].code is None and "gate" in (samples[2].reason or "")


def test_an_unreachable_llm_fails_the_samples_but_a_refused_request_stops() -> None:
    with ReplayServer(default=error(503)) as server:
        samples = generate(fast_config(server, max_retries=1), build_messages("ctx"), 2, iteration=1)
    assert all(s.code is None and "no reply from the LLM" in (s.reason or "") and "503" in (s.reason or "")
               for s in samples)
    with ReplayServer(default=error(400, "model 'x' does not exist")) as server, \
            pytest.raises(LLMRequestError, match="does not exist"):
        generate(fast_config(server), build_messages("ctx"), 2, iteration=0)
    with pytest.raises(ValueError, match="samples per iteration"):
        generate(fast_config("http://127.0.0.1:9/v1"), build_messages("ctx"), 0, iteration=0)
