"""The task as the LLM sees it: a compact, Pythonic class-like description built from ``EnvSpec`` and the task card
(Text2Reward's environment abstraction), optionally followed by the environment's source (Eureka's context).

    text = task_context(spec, load_task_card(spec.name), source=False)

The description names every term the generated ``compute_reward(obs, action)`` receives (``obs[name]`` for each
named state slice, and ``obs["state"]``), with shapes, units, frames and meanings; the action's meaning from the
``ActionSpec``; the episode length; and the success definition from the task card's notes. The simulator's
privileged terms (success flag, ground-truth reward parts) are *not* offered: generated code must work on data
from a real robot too.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from typing import Any

from robot_rl.core.specs import EnvSpec
from robot_rl.envs.task_cards import TaskCard

SOURCE_LIMIT = 12_000
"""Characters of environment source included at most (the rest is cut with a note)."""
_REWARD_METHODS = re.compile(r"reward|evaluate_state|success", re.IGNORECASE)
"""Methods left out of the source: the ground-truth reward and success code would give the answer away."""


def class_name(spec: EnvSpec) -> str:
    """``metaworld/drawer-open-v3`` -> ``DrawerOpenV3``."""
    words = re.split(r"[^0-9A-Za-z]+", spec.name.rsplit("/", 1)[-1])
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "Task"


def _sentences(text: str) -> list[str]:
    return [t for t in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if t]


def success_definition(card: TaskCard | None, spec: EnvSpec) -> str:
    """The sentences of the card's notes that say what success is, else the backend's note, else ''."""
    if card is not None:
        said = [s for s in _sentences(card.notes) if "success" in s.lower()]
        if said:
            return re.sub(r"^success:\s*", "", " ".join(said), flags=re.IGNORECASE)
    return str(spec.extras.get("success", ""))


def task_context(spec: EnvSpec, card: TaskCard | None = None, source: bool = False) -> str:
    """The description (and with ``source`` the env's source code, reward and success methods removed)."""
    task_text = (card.task_text if card is not None else "") or spec.task_text or spec.name
    doc = [f"Task: {task_text}.", ""]
    timing = f" at {spec.control_hz:g} Hz" if spec.control_hz else ""
    doc.append(f"Environment {spec.name}, batched: N copies step together. An episode lasts "
               f"{spec.max_episode_steps} steps{timing}.")
    scene = [t for t in _sentences(card.notes) if "success" not in t.lower()] if card is not None else []
    if scene:
        doc += [""] + textwrap.wrap("Scene: " + " ".join(scene), 100)
    success = success_definition(card, spec)
    if success:
        doc += [""] + textwrap.wrap("Success (judged by the simulator; your reward cannot read it): " + success, 100)
    lines = [f"class {class_name(spec)}:", '    """' + doc[0]]
    lines += [("    " + d) if d else "" for d in doc[1:]]
    lines += ['    """', ""]
    lines += _observation_lines(spec)
    lines.append("")
    lines += _action_lines(spec)
    text = "\n".join(lines).rstrip() + "\n"
    if source:
        code = env_source(spec.name)
        if code:
            text += ("\n# Source of the simulator's environment class (its reward and success methods removed; "
                     "state[...] above is its observation):\n" + code)
    return text


def _observation_lines(spec: EnvSpec) -> list[str]:
    state = spec.observations["state"]
    out = ["    # compute_reward(obs, action): obs is a dict[str, torch.Tensor], the observation AFTER the action",
           "    # was applied; every term is float32 [N, size]."]
    width = max([len(s.name) for s in spec.state_slices] + [5])
    for s in spec.state_slices:
        where = ", ".join(x for x in (s.unit and f"unit {s.unit}", s.frame and f"{s.frame} frame") if x)
        note = "; ".join(x for x in (where, s.description) if x)
        out.append(f"    {s.name.ljust(width)}: Tensor  # [N, {s.size}] = state[:, {s.start}:{s.stop}]; {note}")
    whole = "the whole vector; the terms above are slices of it" if spec.state_slices else state.description
    out.append(f"    {'state'.ljust(width)}: Tensor  # [N, {spec.state_dim}] {whole}")
    return out


def _action_lines(spec: EnvSpec) -> list[str]:
    a = spec.action
    out = [f"    # action: torch.Tensor float32 [N, {a.dim}], each entry in [-1, 1]; mode {a.mode}; the robot gets "
           "physical = action * scale + offset:"]
    for i in range(a.dim):
        name = a.names[i] if a.names else f"a{i}"
        unit = f" ({a.units[i]})" if a.units else ""
        out.append(f"    #   action[:, {i}] {name}: physical = action * {a.scale[i]:g} + {a.offset[i]:g}{unit}")
    extra = spec.extras.get("action")
    if isinstance(extra, str) and extra:
        out += ["    #   " + line for line in textwrap.wrap(extra, 96)]
    return out


def env_source(name: str, limit: int = SOURCE_LIMIT) -> str | None:
    """The source of the simulator class behind ``name`` (MetaWorld or gymnasium), reward methods removed;
    ``None`` when it cannot be found."""
    cls = _env_class(name)
    if cls is None:
        return None
    try:
        code = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return None
    code = strip_methods(code, _REWARD_METHODS)
    if len(code) > limit:
        code = code[:limit] + f"\n# ... ({len(code) - limit} more characters left out)\n"
    return code


def strip_methods(code: str, pattern: re.Pattern[str]) -> str:
    """``code`` with every function whose name matches ``pattern`` removed (whole lines, decorators included)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    drop: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and pattern.search(node.name):
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            drop.update(range(first, (node.end_lineno or node.lineno) + 1))
    return "\n".join(line for i, line in enumerate(code.splitlines(), 1) if i not in drop) + "\n"


def _env_class(name: str) -> Any:
    backend, _, task = name.partition("/")
    try:
        if backend == "metaworld":
            from metaworld.env_dict import ALL_V3_ENVIRONMENTS

            return ALL_V3_ENVIRONMENTS.get(task)
        if backend == "gym":
            import gymnasium

            entry = gymnasium.spec(task).entry_point
            if isinstance(entry, str):
                module, _, attr = entry.partition(":")
                return getattr(__import__(module, fromlist=[attr]), attr)
            return entry
    except Exception:  # an unknown or broken backend gives no source, never an error
        return None
    return None
