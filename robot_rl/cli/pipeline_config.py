"""The pipeline config's checks: every section, key, type and name of a ``robot-rl pipeline`` YAML, checked before
anything touches the disk, with a one-line error naming the key (and the closest valid one)."""

from __future__ import annotations

import dataclasses
from typing import Any, get_type_hints

from robot_rl.core.config_check import RANGE, ConfigError, Range, check_value, config_from_dict, did_you_mean
from robot_rl.rewards.labelers import LABELERS

TOP_LEVEL: dict[str, Any] = {"task": str, "out": str, "seed": int, "collect": dict, "label": dict,
                             "reward_model": dict, "relabel": dict, "train": dict, "finetune": dict, "eval": dict,
                             "ray": dict}
"""Top-level keys of a pipeline config and their types."""
COLLECT_KEYS: dict[str, Any] = {"episodes": int, "preset": str, "num_envs": int}
LABEL_KEYS: dict[str, Any] = {"labeler": str, "pairs": int, "segment_length": int, "selection": str,
                              "teacher": dict, "vlm": dict}
VLM_KEYS: dict[str, Any] = {"url": str | None, "model": str | None, "api_key_env": str, "concurrency": int,
                            "image_size": int, "camera": str | None}
EVAL_KEYS: dict[str, Any] = {"episodes": int}
RELABEL_KEYS: dict[str, Any] = {"pessimism": float}
"""relabel: ``pessimism`` k relabels with the reward ensemble's mean - k·std (fine-tuning then uses the same)."""
RAY_KEYS: dict[str, Any] = {"address": str, "workers": int}
"""ray: ``address`` (``local`` or ``HOST:PORT``) and ``workers`` go to the stages that run on Ray as
``--ray-address``/``--ray-workers``: collect, label (VLM queries) and relabel. Not part of any stage's key: the
results are the same with or without Ray."""
FINETUNE_EXTRA: dict[str, Any] = {"num_envs": int}
"""finetune keys besides the FinetuneConfig fields that ``robot-rl finetune`` takes as flags."""


def check_config(cfg: dict[str, Any]) -> None:
    """Raise a one-line ``ValueError`` for an unknown section or key (with the closest valid name), a value of the
    wrong type, an unknown task, labeler, preset or selection, or a dataclass section its class rejects."""
    from robot_rl.cli.finetune_cmd import FINETUNE_FLAGS
    from robot_rl.data.behaviours import PRESETS
    from robot_rl.rewards.labelers.scripted import TeacherConfig
    from robot_rl.rewards.model import RewardModelConfig
    from robot_rl.rewards.pairs import SELECTIONS
    from robot_rl.rl.finetune import FinetuneConfig
    from robot_rl.rl.train import TrainConfig

    _check_keys(cfg, TOP_LEVEL, "")
    sections = {name: _mapping(cfg, name, name) for name in TOP_LEVEL if TOP_LEVEL[name] is dict}
    _check_keys(sections["collect"], COLLECT_KEYS, "collect.")
    _check_keys(sections["label"], LABEL_KEYS, "label.")
    _check_keys(sections["eval"], EVAL_KEYS, "eval.")
    _check_keys(sections["relabel"], RELABEL_KEYS, "relabel.")
    _check_keys(sections["ray"], RAY_KEYS, "ray.")
    ray = sections["ray"]
    if ray and not str(ray.get("address") or "").strip():
        raise ValueError("pipeline config: ray.address is required in a ray section ('local' or HOST:PORT)")
    if ray.get("workers") is not None and ray["workers"] < 1:
        raise ValueError(f"pipeline config: ray.workers must be >= 1, got {ray['workers']}")
    if not sections["relabel"].get("pessimism", 0) >= 0:
        raise ValueError(f"pipeline config: relabel.pessimism must be >= 0, got {sections['relabel']['pessimism']}")
    _check_keys(_mapping(sections["label"], "vlm", "label.vlm"), VLM_KEYS, "label.vlm.")
    teacher = _mapping(sections["label"], "teacher", "label.teacher")
    _check_dataclass(TeacherConfig, teacher, "label.teacher.", exclude={"seed": "the top-level seed"})
    _check_dataclass(RewardModelConfig, sections["reward_model"], "reward_model.")
    _check_dataclass(TrainConfig, sections["train"], "train.", exclude={"dataset": "the pipeline's collected data"})
    ft = sections["finetune"]
    ft_fields = {n: t for n, t in get_type_hints(FinetuneConfig).items() if n in FINETUNE_FLAGS}
    not_flags = {f.name: "robot-rl finetune, which has no flag for it" for f in dataclasses.fields(FinetuneConfig)
                 if f.name not in FINETUNE_FLAGS}
    _check_keys(ft, {**ft_fields, **FINETUNE_EXTRA}, "finetune.", not_flags)
    for value, known, where in ((cfg.get("task", "metaworld/drawer-open-v3"), None, "task"),
                                (sections["collect"].get("preset", "suboptimal"), sorted(PRESETS), "collect.preset"),
                                (sections["label"].get("labeler", "scripted"), list(LABELERS), "label.labeler"),
                                (sections["label"].get("selection", "uniform"), list(SELECTIONS), "label.selection")):
        if known is None:
            from robot_rl.envs import list_tasks

            known = list_tasks()
        if value not in known:
            raise ValueError(f"pipeline config: {where} '{value}' is unknown{did_you_mean(str(value), known)}; "
                             f"choose one of: {', '.join(known)}")
    try:
        TeacherConfig(**teacher)
        config_from_dict(RewardModelConfig, sections["reward_model"], "reward_model.")
        config_from_dict(TrainConfig, {**sections["train"], "dataset": "pipeline.h5"}, "train.")
        config_from_dict(FinetuneConfig, {k: v for k, v in ft.items() if k not in FINETUNE_EXTRA}, "finetune.")
    except (TypeError, ValueError) as e:
        raise ValueError(f"pipeline config: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"pipeline config: '{where}' must be a mapping, got {value!r}")
    return value


def _check_keys(values: dict[str, Any], types_: dict[str, Any], where: str,
                not_here: dict[str, str] | None = None, bounds: dict[str, Range] | None = None) -> None:
    """Each key of ``values`` must be in ``types_`` and its value of that type (and in its range, ``bounds``), as
    ``core.config_check`` judges them; ``not_here``: key -> what sets it instead (a valid field name that this section
    must not set)."""
    not_here = not_here or {}
    for key, value in values.items():
        if key in not_here:
            raise ValueError(f"pipeline config: {where}{key} cannot be set here (it comes from {not_here[key]})")
        if key not in types_:
            valid = [k for k in types_ if k not in not_here]
            raise ValueError(f"pipeline config: unknown key {where}{key}{did_you_mean(str(key), valid)}; valid keys: "
                             f"{', '.join(valid)}")
        if types_[key] is not dict:
            try:
                check_value(types_[key], value, f"{where}{key}", (bounds or {}).get(key))
            except ConfigError as e:
                raise ValueError(f"pipeline config: {e}") from None


def _check_dataclass(cls: type, values: dict[str, Any], where: str, exclude: dict[str, str] | None = None) -> None:
    """``_check_keys`` against the fields of the dataclass ``cls`` and their declared ranges, into fields that are
    dataclasses themselves."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, {n: (dict if dataclasses.is_dataclass(t) else t) for n, t in hints.items() if n in fields},
                where, exclude, {n: f.metadata[RANGE] for n, f in fields.items() if RANGE in f.metadata})
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"pipeline config: '{where}{key}' must be a mapping, got {value!r}")
            _check_dataclass(hints[key], value, f"{where}{key}.")
