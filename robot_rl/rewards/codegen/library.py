"""Text2Reward's few-shot examples: verified reward functions of *other* tasks, retrieved by how close their task is
to the one searched for, shown in the prompt before the task's own description.

The library is the project's own verified rewards (``rewards/prompts/reward_library/*.yaml``: task, sentence, code,
how it was verified) plus, with ``library=DIR``, every finished search under ``DIR`` (``best_reward.json`` with
``best_reward.py`` beside it: a reward the search accepted, with its task and scores). Closeness is the word
overlap (Jaccard) of task sentence and task name; the task itself is never its own example, so a search cannot be
handed its answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Example:
    task: str
    task_text: str
    code: str
    origin: str
    """Where it comes from (library file, or the search folder) and how it was verified."""


def builtin_examples() -> list[Example]:
    out = []
    for entry in sorted(resources.files("robot_rl.rewards.prompts").joinpath("reward_library").iterdir(),
                        key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
            out.append(Example(data["task"], data["task_text"], data["code"].rstrip() + "\n",
                               f"reward_library/{entry.name}: {' '.join(str(data.get('verified', '')).split())}"))
    return out


def search_examples(root: str | Path) -> list[Example]:
    """Best rewards of the finished searches under ``root`` (one-line error when ``root`` is not a folder)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--library {root}: not a folder (expected one holding reward-search output folders)")
    out = []
    for info_path in sorted(root.rglob("best_reward.json")):
        code_path = info_path.with_name("best_reward.py")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            code = "\n".join(line for line in code_path.read_text(encoding="utf-8").splitlines()
                             if not line.startswith("# ")) + "\n"
        except (OSError, ValueError) as e:
            raise ValueError(f"{info_path}: not a readable reward-search result ({e})") from None
        scores = info.get("final_evaluation") or info.get("scores") or {}
        origin = f"{info_path.parent}: accepted by reward-search, scores {json.dumps(scores, default=str)[:200]}"
        out.append(Example(str(info.get("task", "")), str(info.get("task_text") or ""), code, origin))
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - {"the", "a", "an", "v", "metaworld"}


def retrieve(task: str, task_text: str, k: int, library: str | Path | None = None) -> list[Example]:
    """The ``k`` examples closest to (``task``, ``task_text``), other tasks only, best first (ties: by name)."""
    if k < 1:
        return []
    pool = builtin_examples() + (search_examples(library) if library else [])
    own = task.rsplit("/", 1)[-1]
    query = _words(task_text) | _words(own)

    def closeness(e: Example) -> float:
        words = _words(e.task_text) | _words(e.task.rsplit("/", 1)[-1])
        return len(query & words) / max(1, len(query | words))

    others = [e for e in pool if e.task.rsplit("/", 1)[-1] != own]
    return sorted(others, key=lambda e: (-closeness(e), e.task))[:k]


def examples_text(examples: list[Example]) -> str:
    """The prompt section: each example's task sentence and code."""
    parts = ["Verified reward functions of other tasks (for style and scale; the names in obs differ by task):"]
    for e in examples:
        parts.append(f"\nTask '{e.task}' ({e.task_text}):\n\n```python\n{e.code.rstrip()}\n```")
    return "\n".join(parts) + "\n"
