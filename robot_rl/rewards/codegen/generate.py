"""Asking the LLM for reward code: the prompt (function contract, the gate's rules, task context, feedback), K
samples per iteration through ``robot_rl.llm.LLMClient``, and strict reply parsing.

A reply must hold exactly one Python function ``compute_reward(obs, action)``, in one fenced code block (or as the
whole reply). Anything else (no code, two functions, two candidate blocks, a syntax error, code the gate rejects)
is a failed candidate with a one-line reason, which the next iteration's feedback quotes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from robot_rl.llm import LLMClient, LLMConfig
from robot_rl.llm.errors import LLMAuthError, LLMError, LLMRequestError, one_line
from robot_rl.llm.messages import Message, system_message, user_message

PROMPT_VERSION = "reward-search-v1"
"""Changes whenever the prompt text changes (recorded in every candidate's provenance)."""

SYSTEM_PROMPT = """\
You are a reward engineer for reinforcement learning in robotics. You write dense reward functions that make a
policy learn the task quickly and reliably.

Write exactly one Python function, in one ```python code block:

    def compute_reward(obs, action):
        ...
        return reward, components

- obs: dict[str, torch.Tensor], the observation AFTER the action was applied; the keys, shapes and units are in
  the environment description. action: torch.Tensor [N, A] in [-1, 1].
- Everything is batched over N environments: work on whole tensors (no Python loops over N, no .item()).
- Return reward: Tensor [N] (finite, preferably within about [-10, 10] per step) and components:
  dict[str, Tensor [N]], one entry per reward term you add up (name: its contribution), so that each term can
  be measured during training.
- `torch` and `math` are already available: write no import statements. Use only torch, math and plain
  arithmetic: no files, no global state, no names or attributes starting with _ (__class__ ...), no
  eval/exec/open/getattr/format, no nested functions or lambdas, no try or with blocks.
- Use only the observation terms listed; the simulator's success flag is not available.
- The code runs in a sandbox with limited time and memory: keep it short and cheap.
"""

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


def build_messages(context: str, feedback: str | None = None) -> list[Message]:
    """System prompt + one user message: the environment description, then the feedback of earlier iterations."""
    text = f"Environment description (Python-like):\n\n```python\n{context.rstrip()}\n```\n\n"
    if feedback:
        text += f"Feedback on the reward functions tried so far:\n\n{feedback.rstrip()}\n\n"
        text += ("Write an improved compute_reward(obs, action): fix what failed, and change the terms that the "
                 "statistics show are not helping.\n")
    else:
        text += "Write compute_reward(obs, action) for this task.\n"
    return [system_message(SYSTEM_PROMPT), user_message(text)]


def parse_sample(iteration: int, index: int, reply: str) -> Sample:
    """A ``Sample`` from a reply: code that the gate passed (``gate.extract_code``, ``gate.check_source``), or the
    gate's one-line reason."""
    from robot_rl.rewards.codegen import gate

    try:
        code = gate.extract_code(reply)
        gate.check_source(code)
    except gate.GateError as e:
        return Sample(iteration, index, None, f"rejected by the gate: {one_line(str(e))}", reply)
    return Sample(iteration, index, code, None, reply)


def generate(config: LLMConfig, messages: Sequence[Message], k: int, iteration: int, seed: int = 0) -> list[Sample]:
    """``k`` samples for ``messages``, requested concurrently; request ``i`` carries ``seed`` = seed * 10007 +
    iteration * 1009 + i (so samples differ on servers that honour it, and a response cache keeps each).

    A sample whose request failed for good (server unreachable, deadline) is a failed sample with the reason;
    a refused request (400, 401, 403...) raises ``LLMRequestError``: retrying other samples would not help."""
    if k < 1:
        raise ValueError(f"samples per iteration must be >= 1, got {k}")
    from robot_rl.llm.client import run_sync

    async def one(i: int) -> Sample:
        extra: dict[str, Any] = {**config.extra_body, "seed": seed * 10007 + iteration * 1009 + i}
        client = LLMClient(dataclasses.replace(config, extra_body=extra))
        start = time.monotonic()
        try:
            reply = await client.achat(messages)
        except (LLMAuthError, LLMRequestError):
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
        return list(await asyncio.gather(*(one(i) for i in range(k))))

    return run_sync(all_samples())
