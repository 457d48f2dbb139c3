"""Per-frame success labels: "is the task achieved in this observation?" answered by a labeler, stored in the
success label store (``<dataset>.success-labels.sqlite``) and read by
``robot_rl.rewards.success.training.train_success``.

- ``ScriptedSuccessTeacher``: the simulator's ground truth with a mistake rate (sim only; it plays the person or VLM).
- ``VLMSuccessLabeler``: one image, one yes/no question (prompt ``prompts/success/success-v1.yaml``), parsed strictly.

A success query is a ``Query`` whose two segments are the same one-step segment, so ``label_queries`` and
``LabelStore`` serve it unchanged. The store is its own file because ``train-reward`` reads every row of the store it
is given as a preference pair.
"""

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from robot_rl.data import GROUND_TRUTH, Dataset, Episode
from robot_rl.rewards.base import CANT_TELL, Label, Query, Segment, SegmentRef
from robot_rl.rewards.labelers.vlm import VLMLabeler, prompt_versions, read_prompt_file

DEFAULT_PROMPT = "success-v1"
SUCCESS = 1.0
FAILURE = 0.0
SUCCESS_LABELERS = ("scripted", "vlm")


class SuccessError(ValueError):
    """Bad input to a success classifier, or an unusable classifier file; the message is one line."""


def default_success_store(dataset: str | os.PathLike[str]) -> str:
    """Where per-frame success labels of ``dataset`` go: ``<dataset>.success-labels.sqlite``."""
    return os.fspath(dataset) + ".success-labels.sqlite"


# -- per-frame success labelers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuccessQuery(Query):
    """"Is the task achieved in this observation?": a ``Query`` whose ``first`` and ``second`` are the same one-step
    segment (so the label store and ``label_queries`` serve it unchanged). Label values: ``SUCCESS`` 1.0,
    ``FAILURE`` 0.0, ``CANT_TELL``."""

    true_success: float = math.nan
    """Simulator ground truth of this observation (NaN: unknown); only the scripted teacher reads it."""


class ScriptedSuccessTeacher:
    """Per-frame success labels from the simulator's ground truth, each flipped with probability ``mistake``
    (seeded by the query's content, so asking again gives the same answer). Sim data only."""

    name = "success-scripted"
    uses_images = False

    def __init__(self, mistake: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= mistake <= 1.0:
            raise SuccessError(f"success teacher: mistake rate must be in [0, 1], got {mistake}")
        self.mistake, self.seed = float(mistake), int(seed)

    def identity(self) -> dict[str, Any]:
        return {"labeler": self.name, "query": "success", "model": "ground_truth", "mistake": self.mistake,
                "seed": self.seed}

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        for i, query in enumerate(queries):
            yield i, self.answer(query)

    def answer(self, query: Query) -> Label:
        truth = getattr(query, "true_success", math.nan)
        if not math.isfinite(truth):
            raise SuccessError(f"success teacher: episode {query.first.ref.episode} step {query.first.ref.start} has "
                               "no ground-truth success; the scripted teacher needs data recorded in simulation")
        success = truth > 0.5
        prov: dict[str, Any] = {"labeler": self.name, "true_success": bool(success)}
        rng = np.random.default_rng([self.seed, int(query.digest(False)[:15], 16)])
        if self.mistake > 0 and rng.random() < self.mistake:
            success = not success
            prov["flipped"] = True
        return Label(SUCCESS if success else FAILURE, prov)


_SUCCESS_LINE = re.compile(r"^[\s>*_`#-]*(?:final\s+)?answer[\s*_`]*[:=][\s*_`\"']*(yes|no|unsure)[\s*_`\"'.!]*$",
                           re.IGNORECASE)
_BARE_SUCCESS = re.compile(r"^[\s*_`\"']*(yes|no|unsure)[\s*_`\"'.!]*$", re.IGNORECASE)


class UnparseableSuccessAnswer(ValueError):
    """A reply without exactly one readable yes/no/unsure answer."""


def parse_success_answer(reply: str) -> str:
    """``"yes"``, ``"no"`` or ``"unsure"``, strictly: exactly one line ``Answer: yes|no|unsure`` (any case, markdown
    emphasis and a trailing period tolerated), or a reply that is nothing but the word; else
    ``UnparseableSuccessAnswer`` (no such line, "yes or no", several answer lines)."""
    found = [m.group(1).lower() for m in map(_SUCCESS_LINE.match, reply.splitlines()) if m]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UnparseableSuccessAnswer(f"{len(found)} answer lines ({', '.join(found)}); exactly one is required")
    bare = _BARE_SUCCESS.match(reply.strip())
    if bare:
        return bare.group(1).lower()
    shown = " ".join(reply.split())
    shown = shown if len(shown) <= 80 else "..." + shown[-77:]
    raise UnparseableSuccessAnswer(f"no line 'Answer: yes', 'Answer: no' or 'Answer: unsure' in the reply '{shown}'")


@dataclass(frozen=True)
class SuccessPrompt:
    version: str
    intro: str
    question: str
    reminder: str


def available_success_prompts() -> list[str]:
    """Success prompt versions in ``robot_rl/rewards/prompts/success/``."""
    return prompt_versions("success")


def load_success_prompt(version: str = DEFAULT_PROMPT) -> SuccessPrompt:
    data, where = read_prompt_file(version, "success", "success", SuccessError)
    texts = {}
    for key in ("intro", "question", "reminder"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise SuccessError(f"{where}: missing text '{key}'")
        texts[key] = value
    for word in ("Answer: yes", "Answer: no", "Answer: unsure"):
        if word not in texts["question"]:
            raise SuccessError(f"{where}: the question must ask for '{word}'")
    return SuccessPrompt(version, texts["intro"], texts["question"], texts["reminder"])


class VLMSuccessLabeler(VLMLabeler):
    """Per-frame yes/no success labels from a VLM behind an OpenAI-compatible endpoint: one request per frame (the
    frame, the task sentence, "describe, then answer yes, no or unsure"), parsed strictly; an unreadable reply is
    re-asked ``max_parse_retries`` times, then stored as can't tell. "unsure" is can't tell. No usable reply (server
    down, deadline) is never an answer: as for ``VLMLabeler`` (whose concurrency, event loop and error handling this
    shares), a dead endpoint or a refused request ends the run at once, other missing replies raise at the end."""

    name = "success-vlm"
    uses_images = True

    def __init__(self, client: Any, prompt_version: str = DEFAULT_PROMPT, max_parse_retries: int = 2,
                 frames_identity: Mapping[str, Any] | None = None, max_concurrency: int | None = None) -> None:
        # VLMLabeler's __init__ loads a preference prompt; this labeler has its own, so it sets the same fields
        if max_parse_retries < 0:
            raise SuccessError(f"max_parse_retries must be >= 0, got {max_parse_retries}")
        self.client = client
        self.success_prompt = load_success_prompt(prompt_version)
        self.prompt_version = prompt_version
        self.max_parse_retries = max_parse_retries
        self.frames_identity = None if frames_identity is None else json.loads(json.dumps(dict(frames_identity)))
        self.max_concurrency = max_concurrency or client.config.max_concurrency

    def identity(self) -> dict[str, Any]:
        return {"labeler": self.name, "query": "success", "model": self.client.config.model,
                "prompt_version": self.prompt_version, "temperature": self.client.config.temperature,
                "frames": self.frames_identity}

    async def label_one(self, query: Query) -> Label:
        from robot_rl.llm import assistant_message, image_part, user_message

        if query.frames is None:
            raise SuccessError("the VLM success labeler needs frames: Query.frames is None")
        started, t0 = datetime.now(UTC), time.monotonic()
        frame = query.frames.last_frame(query.first)
        prompt = self.success_prompt
        replies: list[str] = []
        tokens = {"prompt": 0, "completion": 0}
        served: list[str] = []

        def provenance(**extra: Any) -> dict[str, Any]:
            return {"labeler": self.name, "query": "success", "model": self.client.config.model,
                    "served_model": served[0] if served else None, "prompt_version": self.prompt_version,
                    "temperature": self.client.config.temperature, "frames": self.frames_identity,
                    "reply": replies[-1] if replies else None, "rejected": replies[:-1], "tokens": tokens,
                    "requests": len(replies), "time_s": round(time.monotonic() - t0, 3),
                    "time": started.isoformat(timespec="seconds"), **extra}

        conversation = [user_message(prompt.intro.replace("{task}", query.task_text), image_part(frame),
                                     prompt.question.replace("{task}", query.task_text))]
        why = ""
        for _ in range(1 + self.max_parse_retries):
            reply = await self.client.achat(conversation)
            replies.append(reply.content)
            tokens["prompt"] += reply.prompt_tokens
            tokens["completion"] += reply.completion_tokens
            if reply.model:
                served.append(reply.model)
            try:
                answer = parse_success_answer(reply.content)
            except UnparseableSuccessAnswer as e:
                why = str(e)
                conversation = [*conversation, assistant_message(reply.content),
                                user_message(prompt.reminder.replace("{task}", query.task_text))]
                continue
            if answer == "unsure":
                return Label(CANT_TELL, provenance(answer=answer, reason="unsure"))
            return Label(SUCCESS if answer == "yes" else FAILURE, provenance(answer=answer))
        return Label(CANT_TELL, provenance(answer=None, reason="unparseable",
                                           detail=f"{len(replies)} replies, none readable; last: {why}"))


def make_success_labeler(kind: str, *, mistake: float = 0.0, seed: int = 0, vlm_url: str | None = None,
                         model: str | None = None, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4,
                         prompt_version: str = DEFAULT_PROMPT, frames_identity: dict[str, Any] | None = None,
                         deadline: float = 120.0, cache_path: str | None = None) -> Any:
    """``scripted`` (ground truth with ``mistake``) or ``vlm`` (needs ``vlm_url`` and ``model``)."""
    if kind == "scripted":
        return ScriptedSuccessTeacher(mistake, seed)
    if kind == "vlm":
        if not vlm_url or not model:
            raise SuccessError("the vlm success labeler needs --vlm-url URL and --model NAME")
        from robot_rl.llm import LLMClient, LLMConfig

        client = LLMClient(LLMConfig(base_url=vlm_url, model=model, api_key_env=api_key_env,
                                     max_concurrency=concurrency, deadline_s=deadline, cache_path=cache_path))
        return VLMSuccessLabeler(client, prompt_version=prompt_version, frames_identity=frames_identity)
    raise SuccessError(f"unknown success labeler '{kind}'; choose one of {', '.join(SUCCESS_LABELERS)}")


# -- examples from a dataset ------------------------------------------------------------------------------------


def frame_truth(ep: Episode) -> np.ndarray:
    """float32 ``[T]``: ground-truth success of the observation before each step (``successes[k - 1]``; NaN at
    k = 0 and where the dataset has no per-step successes)."""
    out = np.full(ep.length, np.nan, np.float32)
    if ep.successes is not None and is_sim(ep):
        out[1:] = ep.successes[:-1].astype(np.float32)
    return out


def is_sim(ep: Episode) -> bool:
    return ep.sim_states is not None or GROUND_TRUTH in ep.reward_labels


def end_mark(ep: Episode) -> bool:
    return bool(ep.successes[-1]) if ep.successes is not None else bool(ep.attrs.get("success", False))


def one_step_segment(name: str, ep: Episode, k: int) -> Segment:
    truth = ep.reward_labels[GROUND_TRUTH][0] if GROUND_TRUTH in ep.reward_labels \
        else np.full(ep.length, np.nan, np.float32)
    return Segment(SegmentRef(name, k, 1), ep.states[k:k + 1], ep.actions[k:k + 1], truth[k:k + 1],
                   None if ep.sim_states is None else ep.sim_states[k:k + 1])


def success_queries(ds: Dataset, count: int, frames: Any = None, seed: int = 0) -> list[SuccessQuery]:
    """``count`` observations to ask about: every episode's last observation first (in a seeded order), then
    uniformly drawn ones (steps >= 1), without repeats."""
    rng = np.random.default_rng(seed)
    names = ds.episode_names
    chosen: list[tuple[str, int]] = [(n, ds.episode_length(n) - 1) for n in rng.permutation(names).tolist()]
    chosen = chosen[:count]
    seen = set(chosen)
    total = sum(max(ds.episode_length(n) - 1, 0) for n in names)
    while len(chosen) < min(count, total):
        n = str(names[int(rng.integers(len(names)))])
        length = ds.episode_length(n)
        if length < 2:
            continue
        item = (n, int(rng.integers(1, length)))
        if item not in seen:
            seen.add(item)
            chosen.append(item)
    episodes: dict[str, Episode] = {}
    out = []
    for name, k in chosen:
        if name not in episodes:
            episodes[name] = ds.load_episode(name)
        ep = episodes[name]
        seg = one_step_segment(name, ep, k)
        out.append(SuccessQuery(seg, seg, ds.task_text, frames, float(frame_truth(ep)[k])))
    return out


@dataclass
class SuccessLabelJob:
    store: str
    labels: list[Label]
    queries: list[SuccessQuery]
    asked: int
    reused: int
    accuracy: float
    """Share of decided labels that agree with ground truth (NaN without it)."""
    decided: int


def label_success(dataset: str, labeler: Any, count: int, *, store: str | None = None, camera: str | None = None,
                  image_size: int = 224, seed: int = 0,
                  progress: Callable[[int, int, Label], None] | None = None) -> SuccessLabelJob:
    """Ask ``labeler`` about ``count`` observations of ``dataset`` through the success label store (default
    ``<dataset>.success-labels.sqlite``): stored answers are reused, new ones stored as they arrive."""
    from robot_rl.rewards.labeling import label_queries
    from robot_rl.rewards.store import LabelStore

    store_path = store or default_success_store(dataset)
    with Dataset(dataset) as ds:
        frames = None
        if labeler.uses_images:
            from robot_rl.rewards.frames import FrameSource

            frames = FrameSource(ds, camera, (image_size, image_size))
        queries = success_queries(ds, count, frames, seed)
        try:
            with LabelStore(store_path) as label_store:
                result = label_queries(queries, labeler, label_store, dataset, progress)
        finally:
            if frames is not None:
                frames.close()
    right = decided = 0
    for q, label in zip(queries, result.labels, strict=True):
        if label.value is not None and math.isfinite(q.true_success):
            decided += 1
            right += int((label.value > 0.5) == (q.true_success > 0.5))
    return SuccessLabelJob(store_path, result.labels, queries, result.asked, result.reused,
                           right / decided if decided else math.nan, decided)
