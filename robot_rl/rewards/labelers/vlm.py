"""The VLM preference labeler (RL-VLM-F): a vision-language model compares the last frames of two segments.

Per query, two requests to an OpenAI-compatible endpoint (``robot_rl.llm``):

1. *describe*: the two frames as separate image parts with the task sentence; the model describes each image with
   respect to the goal and says whether either is closer to it;
2. *decide*: given that analysis (text only), the model answers on a final line ``Answer: 0`` (first better),
   ``Answer: 1`` (second better) or ``Answer: -1`` (no difference / unsure); ``parse_answer`` reads it strictly.
   An unreadable reply is re-asked (the reply and a reminder appended to the conversation, so the retry is a new
   request) up to ``max_parse_retries`` times, then the answer is "can't tell".

Segments are compared by their last frames (with length-1 segments, as in RL-VLM-F, that is the whole segment).
Frames come from ``query.frames`` (a ``FrameSource``: stored frames, or renders of the simulator's own camera
view, arm included, nothing hidden). Pairs whose frames are identical are answered "can't tell" without a request.

Outcomes: 0 → ``FIRST``, 1 → ``SECOND``, -1 → ``CANT_TELL`` (reason ``"no difference"``); unreadable after the
re-asks → ``CANT_TELL`` (``"unparseable"``). A failure to get any reply is never an answer (it is not yielded, so
the label store never holds it and a rerun asks again):

- a refused request (400, 401, 403, 404) raises ``LLMRequestError`` and ends the run at once;
- an endpoint nobody serves (``LLMConnectionError``: connection refused, unknown host), or a first query that gets
  no usable reply before any other got one, raises and ends the run at once: every other query would fail the same
  way;
- no usable reply for a query within the client's retries and deadline, once the endpoint has answered others
  (an overloaded server's 503s, say): the other queries go on, and at the end ``LLMUnavailableError`` says how many
  got no reply, with the first error.

Answers yielded before an error stand.

Prompts are versioned YAML files in ``robot_rl/rewards/prompts/`` (``available_prompts()``); the version is part of
the labeler's identity, so changing the wording means a new file and a new version.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import numpy as np
import yaml

from robot_rl.llm import (
    LLMClient,
    LLMConnectionError,
    LLMUnavailableError,
    Message,
    Reply,
    assistant_message,
    image_part,
    user_message,
)
from robot_rl.rewards.base import CANT_TELL, FIRST, SECOND, Label, Query

DEFAULT_PROMPT = "rl-vlm-f-v1"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ANSWER_LINE = re.compile(r"^[\s>*_`#-]*(?:final\s+)?answer[\s*_`]*[:=][\s*_`]*(-1|0|1)[\s*_`.]*$", re.IGNORECASE)
_BARE_ANSWER = re.compile(r"^[\s*_`\"']*(-1|0|1)[\s*_`\"'.]*$")


# -- prompts --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSet:
    """One prompt version's templates (``{task}``; ``{analysis}`` in ``stage2_question``)."""

    version: str
    stage1_intro: str
    first_label: str
    second_label: str
    stage1_question: str
    stage2_question: str
    stage2_reminder: str

    def stage1(self, task: str, first: np.ndarray, second: np.ndarray) -> list[Message]:
        """Stage 1: intro, label, image 1, label, image 2, questions, as separate parts of one user message."""
        return [user_message(_fill(self.stage1_intro, task=task), _fill(self.first_label, task=task),
                             image_part(first), _fill(self.second_label, task=task), image_part(second),
                             _fill(self.stage1_question, task=task))]

    def stage2(self, task: str, analysis: str) -> list[Message]:
        return [user_message(_fill(self.stage2_question, task=task, analysis=analysis))]


def _prompt_dir(subdir: str = "") -> Any:
    folder = resources.files("robot_rl.rewards").joinpath("prompts")
    return folder.joinpath(subdir) if subdir else folder


def prompt_versions(subdir: str = "") -> list[str]:
    """Prompt versions (file names without ``.yaml``) in ``robot_rl/rewards/prompts/<subdir>``."""
    return sorted(p.name[: -len(".yaml")] for p in _prompt_dir(subdir).iterdir() if p.name.endswith(".yaml"))


def read_prompt_file(version: str, kind: str, subdir: str = "",
                     error: type[Exception] = ValueError) -> tuple[dict[str, Any], str]:
    """The YAML mapping of prompt ``version`` in ``prompts/<subdir>`` and its path for messages; ``error`` (one line)
    for an unknown version, invalid YAML, or a ``version`` key that is not the file name."""
    folder = f"robot_rl/rewards/prompts/{subdir + '/' if subdir else ''}"
    available = prompt_versions(subdir)
    if version not in available:
        raise error(f"unknown {kind} prompt version '{version}'; available in {folder}: "
                    f"{', '.join(available) or 'none'}")
    where = f"{folder}{version}.yaml"
    try:
        data = yaml.safe_load(_prompt_dir(subdir).joinpath(f"{version}.yaml").read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise error(f"{where}: not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict) or data.get("version") != version:
        raise error(f"{where}: its 'version' must be '{version}' (the file name), got "
                    f"{data.get('version') if isinstance(data, dict) else data!r}")
    return data, where


def available_prompts() -> list[str]:
    """Prompt versions shipped in ``robot_rl/rewards/prompts/`` (file names without ``.yaml``)."""
    return prompt_versions()


def load_prompt(version: str = DEFAULT_PROMPT) -> PromptSet:
    """The prompt set ``version``; a clear ``ValueError`` for an unknown version or a malformed file."""
    data, where = read_prompt_file(version, "VLM")

    def text(section: str, key: str, allowed: tuple[str, ...] = ("task",)) -> str:
        value = (data.get(section) or {}).get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: missing text {section}.{key}")
        unknown = sorted(set(_PLACEHOLDER.findall(value)) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: {section}.{key} has unknown placeholder(s) {unknown}; allowed: {list(allowed)}")
        return value

    prompts = PromptSet(version, text("stage1", "intro"), text("stage1", "first_label"),
                        text("stage1", "second_label"), text("stage1", "question"),
                        text("stage2", "question", ("task", "analysis")), text("stage2", "reminder"))
    if "{analysis}" not in prompts.stage2_question:
        raise ValueError(f"{where}: stage2.question must contain {{analysis}} (the stage-1 reply)")
    return prompts


def _fill(template: str, **values: str) -> str:
    """``template`` with ``{name}`` replaced by ``values[name]`` (other braces are left alone)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


# -- answers --------------------------------------------------------------------------------------------------------


class UnparseableAnswer(ValueError):
    """A stage-2 reply without exactly one readable answer; the message says why."""


def parse_answer(reply: str) -> int:
    """The answer of a stage-2 reply: 0, 1 or -1, strictly.

    Accepted: exactly one line of the form ``Answer: N`` (any case; markdown emphasis, a leading ``Final`` and a
    trailing period tolerated), anywhere in the reply; or a reply that is nothing but ``N``. Everything else raises
    ``UnparseableAnswer``: no such line ("A or B", "0 or 1", prose), a value other than 0, 1, -1, or several
    answer lines.
    """
    lines = [m.group(1) for m in map(_ANSWER_LINE.match, reply.splitlines()) if m]
    if len(lines) == 1:
        return int(lines[0])
    if len(lines) > 1:
        raise UnparseableAnswer(f"{len(lines)} answer lines ({', '.join(lines)}); exactly one is required")
    bare = _BARE_ANSWER.match(reply.strip())
    if bare:
        return int(bare.group(1))
    shown = " ".join(reply.split())
    shown = shown if len(shown) <= 80 else "..." + shown[-77:]
    raise UnparseableAnswer(f"no line 'Answer: 0', 'Answer: 1' or 'Answer: -1' in the reply '{shown}'")


# -- the labeler ----------------------------------------------------------------------------------------------------


@dataclass
class _Trace:
    """What one query cost and said, for its provenance."""

    requests: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    served_model: str | None = None
    stage1: str | None = None
    stage2: list[str] = field(default_factory=list)

    def add(self, reply: Reply) -> None:
        self.requests += 1
        self.attempts += reply.attempts
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.served_model = self.served_model or reply.model


def _json_normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


class VLMLabeler:
    """RL-VLM-F preference labels from a VLM behind an OpenAI-compatible endpoint.

    ``frames_identity`` is the frame source's ``identity()`` (camera and image size) of the queries this labeler
    will answer: it is part of ``identity()`` (the label store's key: other camera or size, other answers), and
    ``label`` checks every query's ``query.frames.identity()`` against it. Make the labeler with
    ``VLMLabeler(client, frames_identity=frame_source.identity())``.

    ``label`` runs up to ``max_concurrency`` queries at once (default: the client's ``max_concurrency``), in the
    calling thread's own event loop (frames are read or rendered in the calling thread, which renderers with
    thread-bound GL contexts need); ``alabel`` is the same for async code.
    """

    name = "vlm"
    uses_images = True

    def __init__(self, client: LLMClient, prompt_version: str = DEFAULT_PROMPT, max_parse_retries: int = 2,
                 frames_identity: Mapping[str, Any] | None = None, max_concurrency: int | None = None) -> None:
        if max_parse_retries < 0:
            raise ValueError(f"max_parse_retries must be >= 0, got {max_parse_retries}")
        self.client = client
        self.prompts = load_prompt(prompt_version)
        self.prompt_version = prompt_version
        self.max_parse_retries = max_parse_retries
        self.frames_identity = None if frames_identity is None else _json_normal(dict(frames_identity))
        self.max_concurrency = max_concurrency or client.config.max_concurrency
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")

    def identity(self) -> dict[str, Any]:
        """Labeler, model, prompt version, temperature and frames (camera, size). Not the base URL: the same model on
        another server gives the same answers."""
        return {"labeler": self.name, "model": self.client.config.model, "prompt_version": self.prompt_version,
                "temperature": self.client.config.temperature, "frames": self.frames_identity}

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        """Yield ``(index, Label)`` for every query, as each completes (any order), each index exactly once."""
        queries = list(queries)
        self._check(queries)
        if not queries:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("VLMLabeler.label() was called inside a running event loop; there, use "
                               "'async for i, label in labeler.alabel(queries)'")
        loop = asyncio.new_event_loop()
        answers = self.alabel(queries)
        try:
            while True:
                try:
                    item = loop.run_until_complete(answers.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            try:
                loop.run_until_complete(answers.aclose())  # cancels queries still running
                loop.run_until_complete(self.client.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def alabel(self, queries: Sequence[Query]) -> AsyncGenerator[tuple[int, Label], None]:
        """``label`` for async code. Call ``await labeler.client.aclose()`` when this event loop is done."""
        queries = list(queries)
        self._check(queries)
        limit = asyncio.Semaphore(self.max_concurrency)

        async def run(index: int, query: Query) -> tuple[int, Label]:
            async with limit:
                return index, await self.label_one(query)

        pending = {asyncio.ensure_future(run(i, q)) for i, q in enumerate(queries)}
        answered = 0
        unavailable: list[LLMUnavailableError] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                failure: BaseException | None = None
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        index, label = task.result()
                        answered += bool(label.provenance.get("requests"))  # the server replied
                        yield index, label
                    elif isinstance(exc, LLMUnavailableError) and not isinstance(exc, LLMConnectionError) \
                            and answered:
                        unavailable.append(exc)  # one query's bad luck with a server that answers others
                    else:
                        failure = failure or exc
                if failure is not None:
                    raise failure
            if unavailable:
                raise LLMUnavailableError(
                    f"{len(unavailable)} of {len(queries)} queries got no usable reply (the other answers stand; "
                    f"a rerun asks only the missing ones); first: {unavailable[0]}")
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def label_one(self, query: Query) -> Label:
        """Answer one query (both stages); see the module docstring for the outcomes."""
        if query.frames is None:
            raise ValueError("the VLM labeler needs frames: Query.frames is None")
        started, t0 = datetime.now(UTC), time.monotonic()
        first = query.frames.last_frame(query.first)
        second = query.frames.last_frame(query.second)
        trace = _Trace()

        def provenance(**extra: Any) -> dict[str, Any]:
            return {"labeler": self.name, "model": self.client.config.model, "served_model": trace.served_model,
                    "prompt_version": self.prompt_version, "temperature": self.client.config.temperature,
                    "frames": self.frames_identity, "stage1": trace.stage1,
                    "stage2": trace.stage2[-1] if trace.stage2 else None, "stage2_rejected": trace.stage2[:-1],
                    "tokens": {"prompt": trace.prompt_tokens, "completion": trace.completion_tokens},
                    "requests": trace.requests, "attempts": trace.attempts,
                    "time_s": round(time.monotonic() - t0, 3), "time": started.isoformat(timespec="seconds"),
                    **extra}

        if first.shape == second.shape and np.array_equal(first, second):
            return Label(CANT_TELL, provenance(answer=None, reason="identical",
                                               detail="both segments end in the same frame; not asked"))
        reply = await self.client.achat(self.prompts.stage1(query.task_text, first, second))
        trace.add(reply)
        trace.stage1 = reply.content
        conversation = self.prompts.stage2(query.task_text, reply.content)
        why = ""
        for _ in range(1 + self.max_parse_retries):
            reply = await self.client.achat(conversation)
            trace.add(reply)
            trace.stage2.append(reply.content)
            try:
                answer = parse_answer(reply.content)
            except UnparseableAnswer as e:
                why = str(e)
                conversation = [*conversation, assistant_message(reply.content),
                                user_message(_fill(self.prompts.stage2_reminder, task=query.task_text))]
                continue
            if answer == -1:
                return Label(CANT_TELL, provenance(answer=-1, reason="no difference"))
            return Label(FIRST if answer == 0 else SECOND, provenance(answer=answer))
        return Label(CANT_TELL, provenance(answer=None, reason="unparseable",
                                           detail=f"{trace.requests - 1} stage-2 replies, none readable; last: {why}"))

    def _check(self, queries: Sequence[Query]) -> None:
        """Every query has frames from the camera and size this labeler's identity names."""
        for i, query in enumerate(queries):
            if query.frames is None:
                raise ValueError(f"query {i}: Query.frames is None; the VLM labeler needs a frame source")
            ident = _json_normal(dict(query.frames.identity()))
            if ident != self.frames_identity:
                raise ValueError(f"query {i}: its frames are {ident} but the labeler was made with frames_identity="
                                 f"{self.frames_identity}; make it with frames_identity=frame_source.identity()")
