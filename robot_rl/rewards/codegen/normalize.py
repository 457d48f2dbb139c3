"""Reward code as LLMs write it, brought to the form the gate (``gate.py``) accepts, before the gate judges it.

What changes (each change is a note, e.g. ``line 1: removed 'import torch'``):

- imports of torch, math, numpy and typing (module level or in a function) are removed; names they bind are replaced
  by what they stand for (``F.relu`` -> ``torch.nn.functional.relu``, ``norm(x)`` after ``from numpy.linalg import
  norm`` -> ``np.linalg.norm(x)``, ``numpy.exp`` -> ``np.exp``); so are module-level aliases (``F =
  torch.nn.functional``). Any other import stays, and the gate names it;
- inert decorators (``@torch.jit.script``, ``@torch.no_grad()``, ``@torch.compile``...) are removed, others stay;
- annotations are removed (``x: Dict[str, Tensor] = {}`` -> ``x = {}``; ``-> Tuple[...]``);
- ``if __name__ == "__main__":`` blocks at module level are removed;
- ``compute_reward``'s defaults go (``action=None``: the sandbox always passes both), and Eureka's signature of
  named observation terms (``compute_reward(hand_pos, obj_pos, action)``) becomes ``(obs, action)`` with
  ``hand_pos = obs["hand_pos"]`` as its first lines; an extra argument with a default (``temperature=0.1``) becomes
  a local set to it.

What stays for the gate to judge: helper functions and module-level constants (the gate allows them), NumPy code
(``np`` is an allow-listed namespace in the worker), the return form (``reward`` or ``(reward, components)``) and
per-sample code (both handled where the code runs, ``worker.py``).

When anything changed, the code is ``ast.unparse`` of the result (comments are lost); the tree keeps the reply's line
numbers, so the gate's reasons point into the code as the LLM wrote it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from robot_rl.rewards.codegen.gate import ARGUMENTS, FUNCTION

MODULE_ROOTS = {"torch": "torch", "math": "math", "numpy": "np"}
"""Modules reward code finds without importing them, and the name each goes by there."""
TYPING_MODULES = ("typing", "typing_extensions", "__future__", "collections.abc")
"""Imports for annotations only: removed with the annotations."""
INERT_DECORATORS = frozenset({
    "torch.jit.script", "torch.jit.script_if_tracing", "torch.jit.export", "torch.jit.unused", "torch.jit.ignore",
    "torch.compile", "torch.no_grad", "torch.inference_mode", "torch.enable_grad", "staticmethod",
})
"""Decorators that change how a function is compiled or run, never what it returns on the worker's inputs."""
ACTION_NAMES = ("action", "actions", "act")
OBS_NAMES = ("obs", "observation", "observations", "obs_dict", "obs_buf")


@dataclass
class Normalized:
    code: str
    """The normalized code (the input itself when nothing changed)."""
    tree: ast.Module | None
    """Its AST, with the input's line numbers; ``None`` on a syntax error."""
    notes: list[str] = field(default_factory=list)
    """What changed, one line each."""
    error: str | None = None
    """``syntax error at line N: ...`` when the code does not parse."""


def normalize(code: str) -> Normalized:
    """``code`` (one reply's code, ``gate.extract_code``) in the gate's form; see the module docstring."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return Normalized(code, None, error=f"syntax error at line {e.lineno}: {e.msg}")
    notes: list[str] = []
    tree = _Rewriter(notes).run(tree)
    if not notes:
        return Normalized(code, tree)
    notes.sort(key=lambda n: int(n.split(":", 1)[0].removeprefix("line ")))
    _fill_empty_bodies(tree)
    ast.fix_missing_locations(tree)
    return Normalized(ast.unparse(tree) + "\n", tree, notes)


def _dotted(node: ast.AST) -> str | None:
    """``torch.jit.script`` for that attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _expression(path: str, where: ast.AST) -> ast.expr:
    """The attribute chain ``path`` as a load expression located at ``where``."""
    first, *rest = path.split(".")
    node: ast.expr = ast.Name(first, ast.Load())
    for part in rest:
        node = ast.Attribute(node, part, ast.Load())
    for sub in ast.walk(node):
        ast.copy_location(sub, where)
    return node


def _mapped(module: str) -> str | None:
    """``numpy.linalg`` -> ``np.linalg``; ``torch.nn`` -> itself; None for any other module."""
    root, _, rest = module.partition(".")
    if root not in MODULE_ROOTS:
        return None
    return MODULE_ROOTS[root] + ("." + rest if rest else "")


def _is_typing(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in TYPING_MODULES)


class _Rewriter(ast.NodeTransformer):
    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.aliases: dict[str, str] = {}
        self.annotations: list[int] = []

    def note(self, node: ast.AST, text: str) -> None:
        self.notes.append(f"line {getattr(node, 'lineno', 0)}: {text}")

    def run(self, tree: ast.Module) -> ast.Module:
        stored: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                stored[node.id] = stored.get(node.id, 0) + 1
            elif isinstance(node, ast.FunctionDef):
                stored[node.name] = stored.get(node.name, 0) + 1
        self.stored = stored
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                self.collect_import(node)
        tree.body = [s for s in tree.body if not self.main_block(s)]
        for stmt in tree.body:  # module-level aliases: F = torch.nn.functional
            self.collect_alias(stmt)
        tree = self.visit(tree)
        if self.annotations:
            lines = sorted(set(self.annotations))
            self.notes.append(f"line {lines[0]}: removed annotations" + (
                f" (lines {', '.join(map(str, lines))})" if len(lines) > 1 else ""))
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == FUNCTION:
                self.signature(fn)
        return tree

    def main_block(self, stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare) and \
                "__name__" in ast.unparse(stmt.test) and "__main__" in ast.unparse(stmt.test):
            self.note(stmt, "removed the 'if __name__ == \"__main__\"' block")
            return True
        return False

    def collect_alias(self, stmt: ast.stmt) -> None:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            return
        path = _dotted(stmt.value)
        name = stmt.targets[0].id
        if path is None or self.stored.get(name, 0) != 1:
            return
        root, _, rest = path.partition(".")
        target = self.aliases.get(root) or _mapped(root) or (root if root in MODULE_ROOTS.values() else None)
        if target is not None and rest:
            self.aliases[name] = f"{target}.{rest}"
            stmt.targets = []  # marked: dropped by visit_Assign
            self.note(stmt, f"'{name}' replaced by {target}.{rest}")

    # ---- imports ----------------------------------------------------------------------------------------------------

    def collect_import(self, node: ast.Import | ast.ImportFrom) -> None:
        """The names ``node`` binds that stand for torch, math or numpy things (before any rewriting)."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _mapped(alias.name)
                if target is not None and alias.asname and alias.asname != target:
                    self.add_alias(alias.asname, target)
                elif target is not None and not alias.asname and alias.name == "numpy":
                    self.add_alias("numpy", "np")
            return
        target = _mapped(node.module or "") if node.level == 0 else None
        if target is not None and not any(a.name == "*" for a in node.names):
            for alias in node.names:
                self.add_alias(alias.asname or alias.name, f"{target}.{alias.name}")

    def visit_Import(self, node: ast.Import) -> ast.Import | None:  # noqa: N802 - ast.NodeVisitor's naming
        kept = [a for a in node.names if _mapped(a.name) is None and not _is_typing(a.name)]
        return self.removed_import(node, kept)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom | ast.Import | None:  # noqa: N802
        module = node.module or ""
        if node.level == 0 and (_is_typing(module) or
                                (_mapped(module) is not None and not any(a.name == "*" for a in node.names))):
            return self.removed_import(node, [])
        return node

    def add_alias(self, name: str, path: str) -> None:
        if self.stored.get(name, 0) == 0:  # a name the code also assigns keeps its own meaning
            self.aliases[name] = path

    def removed_import(self, node: ast.Import | ast.ImportFrom, kept: list[ast.alias]) -> ast.Import | None:
        if isinstance(node, ast.Import) and len(kept) == len(node.names):
            return node
        self.note(node, f"removed '{ast.unparse(node)}'")
        if kept:
            return ast.copy_location(ast.Import(kept), node)
        return None

    # ---- names, decorators, annotations ---------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> ast.expr:  # noqa: N802
        path = self.aliases.get(node.id)
        if path is not None and isinstance(node.ctx, ast.Load):
            return _expression(path, node)
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.Assign | None:  # noqa: N802
        if not node.targets:
            return None  # an alias collected above
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:  # noqa: N802
        kept = []
        for d in node.decorator_list:
            path = _dotted(d.func if isinstance(d, ast.Call) else d)
            resolved = path
            if path is not None:
                root, _, rest = path.partition(".")
                if root in self.aliases:
                    resolved = self.aliases[root] + ("." + rest if rest else "")
            if resolved in INERT_DECORATORS:
                self.note(d, f"removed decorator '@{ast.unparse(d)}'")
            else:
                kept.append(d)
        node.decorator_list = kept
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs,
                  *([args.vararg] if args.vararg else []), *([args.kwarg] if args.kwarg else [])]
        if node.returns is not None:
            self.annotations.append(node.lineno)
            node.returns = None
        for a in params:
            if a.annotation is not None:
                self.annotations.append(a.lineno)
                a.annotation = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt | None:  # noqa: N802
        self.annotations.append(node.lineno)
        if node.value is None:
            return None
        self.generic_visit(node)
        return ast.copy_location(ast.Assign([node.target], node.value), node)

    # ---- compute_reward's signature --------------------------------------------------------------------------------

    def signature(self, fn: ast.FunctionDef) -> None:
        args = fn.args
        if args.vararg or args.kwarg or args.posonlyargs:
            return  # the gate says what is wrong
        positional = [*args.args]
        defaults: dict[str, ast.expr] = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]],
                                                 args.defaults, strict=True))
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None})
        if defaults:
            self.note(fn, f"removed the defaults of {FUNCTION}'s arguments")
            args.defaults, args.kw_defaults = [], [None] * len(args.kwonlyargs)
        names = [a.arg for a in [*args.args, *args.kwonlyargs]]
        if tuple(names) == ARGUMENTS or not names:
            return
        prologue: list[ast.stmt] = []
        if len(names) == 2 and names[0] in OBS_NAMES and names[1] in ACTION_NAMES:
            sources: list[tuple[str, str | None]] = [(names[0], None), (names[1], None)]
        else:
            sources = [(n, None if n in ACTION_NAMES or n == "obs" else n) for n in names]
        for name, key in sources:
            if name in ARGUMENTS:
                continue
            if key is not None and name in defaults:  # a tuning parameter (temperature=0.1): a local constant
                value: ast.expr = defaults[name]
            elif key is None:
                value = ast.Name("action" if name in ACTION_NAMES else "obs", ast.Load())
            else:
                value = ast.Subscript(ast.Name("obs", ast.Load()), ast.Constant(key), ast.Load())
            stmt = ast.Assign([ast.Name(name, ast.Store())], value)
            for sub in ast.walk(stmt):
                ast.copy_location(sub, fn)
            prologue.append(stmt)
        fn.args = ast.arguments([], [ast.arg(a) for a in ARGUMENTS], None, [], [], None, [])
        for a in fn.args.args:
            ast.copy_location(a, fn)
        fn.body = prologue + fn.body
        self.note(fn, f"{FUNCTION}({', '.join(names)}) -> {FUNCTION}(obs, action)"
                      + (", the terms read from obs" if any(k for _, k in sources) else ""))


def _fill_empty_bodies(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and not body and (name == "body" or isinstance(node, ast.Try)) \
                    and not isinstance(node, ast.Module):
                body.append(ast.copy_location(ast.Pass(), node))

