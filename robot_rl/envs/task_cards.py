"""Task cards: ``sim/tasks/<task>.yaml``, the facts about a task that people, VLMs and LLMs are given.

A card is named after the task part of the env name: ``metaworld/drawer-open-v3`` -> ``drawer-open-v3.yaml``,
``gym/Hopper-v5`` -> ``Hopper-v5.yaml``. Keys (all required)::

    task_text: open the drawer          # the sentence a VLM/LLM is given
    camera: corner                      # the camera to show it
    episode_length: 150                 # steps; the scripted expert succeeds well within it
    ground_truth: [success, obj_to_target]   # what the simulator exposes (privileged terms, info keys)
    notes: what the renders show, anything surprising
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from robot_rl.core import EnvSpec

TASKS_DIR = Path(__file__).resolve().parents[2] / "sim" / "tasks"
_KEYS = ("task_text", "camera", "episode_length", "ground_truth", "notes")


@dataclass(frozen=True)
class TaskCard:
    """One task card."""

    name: str
    """Card name = file stem, e.g. ``"drawer-open-v3"``."""
    task_text: str
    """The task sentence a VLM or LLM is given, e.g. ``"open the drawer"``."""
    camera: str
    """The camera whose images a VLM or person is shown."""
    episode_length: int
    """Episode length in steps for this task (collection and evaluation)."""
    ground_truth: tuple[str, ...]
    """Ground truth the simulator exposes (names of privileged terms or info keys)."""
    notes: str
    """Free text: what the renders show, quirks."""


def card_path(name: str, tasks_dir: Path = TASKS_DIR) -> Path:
    """``sim/tasks/<task>.yaml`` for an env name (``metaworld/drawer-open-v3``) or a bare task name."""
    return tasks_dir / f"{name.rsplit('/', 1)[-1]}.yaml"


def load_task_card(name: str, tasks_dir: Path = TASKS_DIR) -> TaskCard | None:
    """The card for ``name`` (env name or bare task name), ``None`` if there is none.

    Raises ``ValueError`` with a one-line message naming the file and the key if the card is malformed.
    """
    path = card_path(name, tasks_dir)
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}:{where} invalid YAML ({getattr(e, 'problem', None) or type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of {', '.join(_KEYS)}, got {type(raw).__name__}")
    return _validate(path, raw)


def task_sentence(name: str, tasks_dir: Path = TASKS_DIR) -> str:
    """The task sentence of the task called ``name`` (``metaworld/drawer-open-v3`` or ``drawer-open-v3``), from its
    card; ``ValueError`` (one line, naming the card file and the tasks with cards) when there is no card."""
    card = load_task_card(name, tasks_dir)
    if card is None:
        known = sorted(p.stem for p in tasks_dir.glob("*.yaml"))
        raise ValueError(f"task '{name}' has no task card ({card_path(name, tasks_dir)}); tasks with cards: "
                         f"{', '.join(known) or 'none'}")
    return card.task_text


def default_camera(spec: EnvSpec, stored: Sequence[str] = (), tasks_dir: Path = TASKS_DIR) -> str:
    """The camera to show, label or train on when none is named: the one rule of every command.

    ``stored``: the cameras whose frames a dataset stores (none for a new dataset). In order: the only stored
    camera; the task card's camera, when it is stored (with none stored: when the env has it); the first stored
    camera in the env's camera order; the env's first camera. Raises ``ValueError`` when there is none.
    """
    stored = list(dict.fromkeys(stored))
    if len(stored) == 1:
        return stored[0]
    card = load_task_card(spec.name, tasks_dir)
    if card is not None and (card.camera in stored or (not stored and (not spec.cameras
                                                                       or card.camera in spec.cameras))):
        return card.camera
    if stored:
        return min(stored, key=lambda c: (spec.cameras.index(c) if c in spec.cameras else len(spec.cameras), c))
    if spec.cameras:
        return spec.cameras[0]
    raise ValueError(f"'{spec.name}' names no camera and no frames are stored")


def _validate(path: Path, raw: dict[str, Any]) -> TaskCard:
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key '{unknown[0]}' (keys: {', '.join(_KEYS)})")
    missing = [k for k in _KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing key '{missing[0]}'")
    for key in ("task_text", "camera"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ValueError(f"{path}: key '{key}' must be a non-empty string, got {raw[key]!r}")
    if not isinstance(raw["notes"], str):
        raise ValueError(f"{path}: key 'notes' must be a string, got {raw['notes']!r}")
    length = raw["episode_length"]
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"{path}: key 'episode_length' must be a positive integer, got {length!r}")
    truth = raw["ground_truth"]
    if not isinstance(truth, list) or not all(isinstance(t, str) and t for t in truth):
        raise ValueError(f"{path}: key 'ground_truth' must be a list of names, got {truth!r}")
    return TaskCard(name=path.stem, task_text=raw["task_text"].strip(), camera=raw["camera"],
                    episode_length=length, ground_truth=tuple(truth), notes=raw["notes"].strip())
