"""Asking the LLM for reward code: the prompt (function contract, the gate's rules, task context, feedback), K
samples per iteration through ``robot_rl.llm.LLMClient``, and strict reply parsing.

A reply must hold one Python function ``compute_reward(obs, action)`` (with any helpers and constants), in one fenced
code block (or as the whole reply). It is normalized (``normalize.py``: imports of torch/math/numpy/typing,
``@torch.jit.script`` and annotations removed) and gated (``gate.py``). Anything else (no code, two candidate blocks,
a syntax error, code the gate rejects) is a failed candidate with every reason on one line, which the next
iteration's feedback quotes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from robot_rl.llm import LLMClient, LLMConfig
from robot_rl.llm.errors import LLMAuthError, LLMConnectionError, LLMError, LLMRequestError, one_line
from robot_rl.llm.messages import Message, system_message, user_message

PROMPT_VERSION = "reward-search-v2"
"""The system prompt's version: ``robot_rl/rewards/prompts/reward_search/<version>.yaml`` (recorded in every
candidate's provenance)."""


def _system_prompt(version: str = PROMPT_VERSION) -> str:
    from robot_rl.rewards.labelers.vlm import read_prompt_file

    data, where = read_prompt_file(version, "reward-search", "reward_search")
    if not isinstance(data.get("system"), str):
        raise ValueError(f"{where}: needs a 'system' text")
    return str(data["system"]).rstrip() + "\n"


SYSTEM_PROMPT = _system_prompt()


@dataclass
class Sample:
    """One LLM sample of one iteration: the code it gave, or why it gave none."""

    iteration: int
    index: int
    code: str | None
    reason: str | None
    """Why there is no usable code (``None`` when ``code`` is set)."""
    reply: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def id(self) -> str:
        return f"it{self.iteration}-s{self.index}"


def build_messages(context: str, feedback: str | None = None, examples: str | None = None,
                   critique: str | None = None) -> list[Message]:
    """System prompt + one user message: verified rewards of other tasks (``examples``, Text2Reward's few-shot),
    the environment description, the feedback of earlier iterations, and a person's ``critique`` of the best one."""
    text = f"{examples.rstrip()}\n\n" if examples else ""
    text += f"Environment description (Python-like):\n\n```python\n{context.rstrip()}\n```\n\n"
    if critique:
        text += f"A person reviewed the reward functions so far and says:\n\n{critique.rstrip()}\n\n"
    if feedback:
        text += f"Feedback on the reward functions tried so far:\n\n{feedback.rstrip()}\n\n"
        text += ("Write an improved compute_reward(obs, action): fix what failed, and change the terms that the "
                 "statistics show are not helping.\n")
    else:
        text += "Write compute_reward(obs, action) for this task.\n"
    return [system_message(SYSTEM_PROMPT), user_message(text)]


@dataclass
class Prepared:
    """One reply through extraction, normalization and the gate: the code to run, or every reason it has none."""

    code: str | None
    """The normalized code the gate accepted (what the sandbox runs), ``None`` when rejected."""
    reasons: list[str]
    """Why it was rejected, one line each (empty when accepted)."""
    notes: list[str]
    """What normalization changed (``line 1: removed 'import torch'``)."""


def prepare_reply(reply: str) -> Prepared:
    """The search's reply path up to the sandbox: ``gate.extract_code``, ``normalize.normalize``,
    ``gate.gate_reasons`` (every reason), then ``gate.check_source`` on the normalized text as the sandbox will."""
    from robot_rl.rewards.codegen import gate
    from robot_rl.rewards.codegen.normalize import normalize

    try:
        code = gate.extract_code(reply)
    except gate.GateError as e:
        return Prepared(None, e.reasons, [])
    if not code.strip():
        return Prepared(None, ["no code: the text is empty"], [])
    result = normalize(code)
    if result.tree is None:
        return Prepared(None, [result.error or "syntax error"], [])
    reasons = gate.gate_reasons(result.tree)
    if not reasons:
        try:
            gate.check_source(result.code)
        except gate.GateError as e:  # the unparsed text must pass as its tree did
            reasons = e.reasons
    return Prepared(None if reasons else result.code, reasons, result.notes)


def parse_sample(iteration: int, index: int, reply: str) -> Sample:
    """A ``Sample`` from a reply (``prepare_reply``): normalized code the gate passed, or the gate's reasons, all of
    them, on one line."""
    prepared = prepare_reply(reply)
    if prepared.code is None:
        reason = one_line("; ".join(prepared.reasons), 1500)
        return Sample(iteration, index, None, f"rejected by the gate: {reason}", reply)
    return Sample(iteration, index, prepared.code, None, reply)


def generate(config: LLMConfig, messages: Sequence[Message], k: int, iteration: int, seed: int = 0,
             first_index: int = 0) -> list[Sample]:
    """``k`` samples for ``messages`` (indices ``first_index`` ...), requested concurrently; request ``i`` carries
    ``seed`` = seed * 10007 + iteration * 1009 + i (so samples differ on servers that honour it, and a response cache
    keeps each; a regenerated sample has a new index, so a new seed).

    A sample whose request failed for good (no reply in time, a server error) is a failed sample with the reason;
    a refused request (400, 401, 403...) raises ``LLMRequestError`` and an endpoint nobody serves
    ``LLMConnectionError``: retrying other samples would not help."""
    if k < 1:
        raise ValueError(f"samples per iteration must be >= 1, got {k}")
    from robot_rl.llm.client import run_sync

    async def one(i: int) -> Sample:
        extra: dict[str, Any] = {**config.extra_body, "seed": seed * 10007 + iteration * 1009 + i}
        client = LLMClient(dataclasses.replace(config, extra_body=extra))
        start = time.monotonic()
        try:
            reply = await client.achat(messages)
        except (LLMAuthError, LLMRequestError, LLMConnectionError):  # every other sample would fail the same way
            raise
        except LLMError as e:
            return Sample(iteration, i, None, f"no reply from the LLM: {one_line(str(e))}",
                          seconds=time.monotonic() - start)
        finally:
            await client.aclose()
            client.close()
        sample = parse_sample(iteration, i, reply.content)
        sample.model, sample.seconds = reply.model, time.monotonic() - start
        sample.prompt_tokens, sample.completion_tokens = reply.prompt_tokens, reply.completion_tokens
        return sample

    async def all_samples() -> list[Sample]:
        return list(await asyncio.gather(*(one(i) for i in range(first_index, first_index + k))))

    return run_sync(all_samples())
