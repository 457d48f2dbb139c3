"""The package's layering (DESIGN.md, "Repository layout"), checked from the source with ``ast``:

- no import cycle between subpackages of ``robot_rl`` (imports inside functions count: a lazy import is still a
  dependency);
- ``robot_rl.rl`` knows rewards only through the protocols in ``robot_rl.core``: it imports nothing from
  ``robot_rl.rewards``;
- ``robot_rl.core`` imports no other ``robot_rl`` subpackage;
- ``robot_rl.ros`` imports only ``robot_rl.core`` and ``robot_rl.data``;
- a module over 500 lines says why in its docstring, on a line starting with ``Length:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robot_rl"
MAX_LINES = 500
LENGTH_MARKER = "Length:"
ROS_MAY_USE = {"core", "data"}
"""``robot_rl.ros`` (the ROS-free node logic) sits low: ``envs.ros_env`` builds on it, and loading a policy or a
reward model is ``robot_rl.apps``'s."""


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``robot_rl``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names of every ``robot_rl`` module or name ``module`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return {n for n in found if n == "robot_rl" or n.startswith("robot_rl.")}


def _subpackage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def _graph() -> dict[str, dict[str, set[str]]]:
    """Subpackage -> imported subpackage -> the modules of the first that import the second."""
    graph: dict[str, dict[str, set[str]]] = {}
    for module, path in _modules().items():
        src = _subpackage(module)
        if src is None:
            continue
        for name in _imports(module, path):
            dst = _subpackage(name)
            if dst is not None and dst != src:
                graph.setdefault(src, {}).setdefault(dst, set()).add(module)
    return graph


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_import_parser_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom . import sibling\n\ndef g():\n    from robot_rl.rewards.model import RewardModel\n")
    found = _imports("robot_rl.rl.m", f)
    assert "robot_rl.rewards.model" in found and "robot_rl.rl.sibling" in found and "os" not in found
    assert _cycles({"a": {"b": {"x"}}, "b": {"a": {"y"}}}) == [["a", "b", "a"]]
    assert _cycles({"a": {"b": {"x"}}, "b": {}}) == []


def test_no_import_cycle_between_subpackages() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    detail = ["; ".join(f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in zip(c, c[1:], strict=False))
              for c in cycles]
    assert not cycles, "import cycles between robot_rl subpackages:\n" + "\n".join(detail)


def test_rl_imports_nothing_from_rewards() -> None:
    users = sorted(_graph().get("rl", {}).get("rewards", set()))
    assert not users, f"robot_rl.rl must know rewards only through robot_rl.core's protocols; imported by {users}"


def test_ros_uses_only_core_and_data() -> None:
    deps = {k: sorted(v) for k, v in _graph().get("ros", {}).items() if k not in ROS_MAY_USE}
    assert not deps, f"robot_rl.ros may import only {sorted(ROS_MAY_USE)}; it imports {deps}"


def test_core_imports_no_other_subpackage() -> None:
    deps = {k: sorted(v) for k, v in _graph().get("core", {}).items()}
    assert not deps, f"robot_rl.core imports other robot_rl subpackages: {deps}"


def test_long_modules_say_why() -> None:
    unexplained = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith(LENGTH_MARKER) for line in doc.splitlines()):
            unexplained.append(f"{module} ({lines} lines)")
    assert not unexplained, (f"modules over {MAX_LINES} lines without a '{LENGTH_MARKER} ...' reason in their "
                             f"docstring (split them, or say why not): {unexplained}")
