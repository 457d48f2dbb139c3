"""Preference labelers by name: one registry read by ``robot-rl label``, the pipeline and ``make_labeler``.

A new labeler is one factory (keyword options in, a ``Labeler`` out) and one line in ``LABELERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_rl.rewards.base import Labeler


@dataclass(frozen=True)
class LabelerOptions:
    """What ``make_labeler`` passes on; each factory reads the fields it needs."""

    teacher: dict[str, Any] | None = None
    """``scripted``: ``TeacherConfig`` fields."""
    vlm_url: str | None = None
    """``vlm``: base URL of an OpenAI-compatible server."""
    model: str | None = None
    """``vlm``: model name."""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    prompt_version: str = "rl-vlm-f-v1"
    frames_identity: dict[str, Any] | None = None
    port: int = 0
    """``human``: the page's port on 127.0.0.1 (0: any free one)."""
    deadline: float = 120.0
    cache_path: str | None = None
    """``vlm``: the client's response cache (SQLite)."""
    requests_per_minute: float | None = None
    """``vlm``: evenly spaced requests, at most this many a minute (None: no rate limit)."""
    limiter: Any = None
    """``vlm``: request slots shared with other processes (``robot_rl.scale.label``); overrides the rate above."""


def _scripted(o: LabelerOptions) -> Labeler:
    from robot_rl.rewards.labelers.scripted import ScriptedTeacher, TeacherConfig

    try:
        return ScriptedTeacher(TeacherConfig(**(o.teacher or {})))
    except TypeError as e:
        raise ValueError(f"bad teacher setting: {e}") from None


def _vlm(o: LabelerOptions) -> Labeler:
    if not o.vlm_url or not o.model:
        raise ValueError("the vlm labeler needs --vlm-url URL and --model NAME (an OpenAI-compatible server)")
    from robot_rl.llm import LLMClient, LLMConfig
    from robot_rl.rewards.labelers.vlm import VLMLabeler

    client = LLMClient(LLMConfig(base_url=o.vlm_url, model=o.model, api_key_env=o.api_key_env,
                                 max_concurrency=o.concurrency, deadline_s=o.deadline, cache_path=o.cache_path,
                                 requests_per_minute=o.requests_per_minute), limiter=o.limiter)
    return VLMLabeler(client, prompt_version=o.prompt_version, frames_identity=o.frames_identity)


def _human(o: LabelerOptions) -> Labeler:
    from robot_rl.rewards.labelers.human import HumanLabeler

    return HumanLabeler(port=o.port)


LABELERS: dict[str, Callable[[LabelerOptions], Labeler]] = {
    "scripted": _scripted,  # B-Pref teacher from ground-truth returns
    "vlm": _vlm,  # RL-VLM-F two-stage query to a VLM
    "human": _human,  # a local web page
}
"""Labeler name -> factory."""


def make_labeler(kind: str, **options: Any) -> Labeler:
    """A labeler by name: ``scripted`` (B-Pref teacher; ``teacher`` holds ``TeacherConfig`` fields), ``vlm``
    (needs ``vlm_url`` and ``model``) or ``human`` (a page on 127.0.0.1:``port``); ``options`` are
    ``LabelerOptions`` fields.

    ``cache_path``: the VLM client's response cache (SQLite). With it, a reply that arrived before a crash is not
    asked for again when the job resumes, even if its query's label was not stored yet (stage 1 of two)."""
    factory = LABELERS.get(kind)
    if factory is None:
        raise ValueError(f"unknown labeler '{kind}'; choose one of {', '.join(LABELERS)}")
    return factory(LabelerOptions(**options))
