"""The pipeline config's checks: every section, key, type and name of a ``robot-rl pipeline`` YAML, checked before
anything touches the disk, with a one-line error naming the key (and the closest valid one)."""

from __future__ import annotations

import dataclasses
import difflib
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from robot_rl.rewards.labelers import LABELERS

TOP_LEVEL: dict[str, Any] = {"task": str, "out": str, "seed": int, "collect": dict, "label": dict,
                             "reward_model": dict, "relabel": dict, "train": dict, "finetune": dict, "eval": dict}
"""Top-level keys of a pipeline config and their types."""
COLLECT_KEYS: dict[str, Any] = {"episodes": int, "preset": str, "num_envs": int}
LABEL_KEYS: dict[str, Any] = {"labeler": str, "pairs": int, "segment_length": int, "selection": str,
                              "teacher": dict, "vlm": dict}
VLM_KEYS: dict[str, Any] = {"url": str | None, "model": str | None, "api_key_env": str, "concurrency": int,
                            "image_size": int, "camera": str | None}
EVAL_KEYS: dict[str, Any] = {"episodes": int}
RELABEL_KEYS: dict[str, Any] = {"pessimism": float}
"""relabel: ``pessimism`` k relabels with the reward ensemble's mean - k·std (fine-tuning then uses the same)."""
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
            raise ValueError(f"pipeline config: {where} '{value}' is unknown{_did_you_mean(str(value), known)}; "
                             f"choose one of: {', '.join(known)}")
    try:
        TeacherConfig(**teacher)
        RewardModelConfig(**sections["reward_model"])
        TrainConfig.from_dict({**sections["train"], "dataset": "pipeline.h5"})
        FinetuneConfig(**{k: v for k, v in ft.items() if k not in FINETUNE_EXTRA})
    except (TypeError, ValueError) as e:
        raise ValueError(f"pipeline config: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"pipeline config: '{where}' must be a mapping, got {value!r}")
    return value


def _did_you_mean(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(name, [str(v) for v in valid], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(values: dict[str, Any], types_: dict[str, Any], where: str,
                not_here: dict[str, str] | None = None) -> None:
    """Each key of ``values`` must be in ``types_`` and its value of that type; ``not_here``: key -> what sets it
    instead (a valid field name that this section must not set)."""
    not_here = not_here or {}
    for key, value in values.items():
        if key in not_here:
            raise ValueError(f"pipeline config: {where}{key} cannot be set here (it comes from {not_here[key]})")
        if key not in types_:
            valid = [k for k in types_ if k not in not_here]
            raise ValueError(f"pipeline config: unknown key {where}{key}{_did_you_mean(str(key), valid)}; valid keys: "
                             f"{', '.join(valid)}")
        if types_[key] is not dict and not _type_ok(types_[key], value):
            raise ValueError(f"pipeline config: {where}{key} must be {_type_name(types_[key])}, got {value!r}")


def _check_dataclass(cls: type, values: dict[str, Any], where: str, exclude: dict[str, str] | None = None) -> None:
    """``_check_keys`` against the fields of the dataclass ``cls``, into fields that are dataclasses themselves."""
    hints = get_type_hints(cls)
    _check_keys(values, {n: (dict if dataclasses.is_dataclass(t) else t) for n, t in hints.items()
                         if n in {f.name for f in dataclasses.fields(cls)}}, where, exclude)
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"pipeline config: '{where}{key}' must be a mapping, got {value!r}")
            _check_dataclass(hints[key], value, f"{where}{key}.")


def _type_ok(tp: Any, value: Any) -> bool:
    """Whether a YAML value fits the annotation ``tp`` (types this check does not know pass)."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_type_ok(t, value) for t in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if origin is tuple or tp is tuple:
        args = get_args(tp)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return isinstance(value, list | tuple) and all(_type_ok(inner, v) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _type_name(tp: Any) -> str:
    if get_origin(tp) is tuple:
        return "a list"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
