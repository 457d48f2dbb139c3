"""Static gate on LLM-written reward code: an allow-list check of the source text (its AST), before it runs.

Accepted: one top-level ``def compute_reward(obs, action)`` (an optional module docstring before it), whose body uses
only ``obs``, ``action``, ``torch``, ``math``, its own locals and the builtins in ``BUILTINS``, calls only those
builtins or attributes named in ``ATTRIBUTES``, and reads only attributes named in ``ATTRIBUTES``.

Rejected, with ``GateError("line N: ...")``: imports; names or attributes starting with ``_`` (dunders, privates:
``().__class__.__bases__[0].__subclasses__()``); attributes off the allow-list (``x.numpy()``, ``torch.save``,
``np.f2py``, ``"{0.__class__}".format(x)``: ``format`` is not on it); assigning or deleting attributes (no
monkey-patching ``torch.sum``); ``global``/``nonlocal``; nested ``def``/``lambda``/``class``; ``yield``/``await``;
``with``; ``try``; calls of anything but an allowed builtin or an allowed attribute (a local, a subscript, a call's
result); rebinding ``torch``, ``math`` or an allowed builtin.

Why ``try`` is rejected: reward math does no I/O that can fail, so a ``try`` only turns a bug into a silent fallback
reward that the search's feedback never sees, and a bare ``except`` would also swallow the worker's own guards
(``MemoryError``, ``RecursionError``). Why ``with``: ``__enter__``/``__exit__`` run code the call rules do not see,
and the inputs carry no gradients, so ``torch.no_grad()`` buys nothing. f-strings are allowed: every expression in
them is ordinary AST that the same rules check (``f"{x.__class__}"`` is rejected like ``x.__class__``); ``str.format``
and ``format()`` are not, because their format strings walk attributes where no AST can see them.

The gate is one layer of several; the worker process (``sandbox.py``) contains what gets past it.
"""

from __future__ import annotations

import ast
import re

from robot_rl.rewards.codegen.errors import RewardCodeError

FUNCTION = "compute_reward"
ARGUMENTS = ("obs", "action")
MODULES = ("torch", "math")

BUILTINS = frozenset({
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "float", "int", "isinstance", "len", "list", "max",
    "min", "pow", "print", "range", "reversed", "round", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "Exception", "IndexError", "KeyError", "NotImplementedError", "RuntimeError",
    "TypeError", "ValueError", "ZeroDivisionError",
})
"""Builtin names reward code may use; the worker's ``__builtins__`` holds exactly these (and nothing else)."""

_TORCH = """
    abs absolute acos acosh add addcmul all allclose amax amin any arange arccos arcsin arctan arctan2 argmax
    argmin as_tensor asin atan atan2 bmm bool broadcast_to cat ceil chunk clamp clamp_max clamp_min clip cos
    cosh cosine_similarity count_nonzero cross cummax cummin cumprod cumsum deg2rad diag diff dist div dot e
    einsum empty_like eq erf exp exp2 expm1 eye finfo flatten flip float16 float32 float64 floor fmod full
    full_like gather ge gt heaviside hypot inf int32 int64 isclose isfinite isinf isnan kron le lerp linspace
    log log10 log1p log2 logaddexp logical_and logical_not logical_or logical_xor logsumexp long lt masked_fill
    matmul max maximum mean median min minimum mm mul nan nan_to_num ne neg norm normalize numel ones ones_like
    outer pi pow prod rad2deg reciprocal relu remainder reshape round rsqrt sigmoid sign sin sinh smooth_l1_loss
    softmax softplus split sqrt square squeeze stack std sub sum tan tanh tensor tile topk transpose tril triu
    trunc unbind unsqueeze var vector_norm where zeros zeros_like linalg nn functional special Tensor dtype
    float int
"""
_TENSOR = """
    T abs amax amin any all argmax argmin bool clamp clamp_max clamp_min clip clone contiguous cos cpu cumsum detach
    device dim div double dtype eps exp expand expand_as flatten float gather index_select indices int isnan item
    log long masked_fill max mean min mul ndim neg new_full new_ones new_tensor new_zeros norm numel permute pow prod
    repeat reshape round shape sigmoid sign sin size sqrt square squeeze std sub sum tanh tiny to tolist transpose
    type_as unsqueeze values view view_as
"""
_MATH = """
    acos asin atan atan2 ceil cos cosh degrees e exp fabs floor hypot inf isfinite isinf isnan log log10 log1p log2 nan
    pi radians sin sinh sqrt tan tanh tau
"""
_CONTAINERS = "append copy extend get items keys update values"

ATTRIBUTES = frozenset((_TORCH + _TENSOR + _MATH + _CONTAINERS).split())
"""Attribute names reward code may read or call, on any object: torch functions, tensor methods, ``math``, and the
read-only or local-only methods of dicts and lists. Nothing that reaches files, memory or other modules (no
``numpy``, ``tofile``, ``save``, ``load``, ``from_file``, ``storage``, ``data_ptr``, ``format``)."""


class GateError(RewardCodeError):
    """The reward code failed the static gate; the message is one line, starting with ``line N:`` where it can."""


def check_source(source: str) -> ast.Module:
    """Parse ``source`` and check it against the gate; return the module AST or raise ``GateError``."""
    if not source.strip():
        raise GateError("no code: the text is empty")
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise GateError(f"syntax error at line {e.lineno}: {e.msg}") from None
    _check_module(tree)
    _Checker().visit(tree.body[-1])
    return tree


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code in an LLM reply: the one fenced Python block that defines ``compute_reward``, else (no fence) the
    whole reply if it parses, else the ``def`` line with its indented body out of the prose around it. ``GateError``
    (one line) when there is no such code or two blocks define it; ``check_source`` judges the code itself."""
    blocks = [body for lang, body in _FENCE.findall(reply) if lang.lower() in ("", "python", "py", "python3")]
    defining = [b for b in blocks if re.search(rf"\bdef\s+{FUNCTION}\b", b)]
    if len(defining) > 1:
        raise GateError(f"the reply has {len(defining)} code blocks that define {FUNCTION}, expected one")
    if defining:
        return defining[0].strip("\n") + "\n"
    if blocks:
        return blocks[0].strip("\n") + "\n"  # check_source says what is wrong with it
    if not re.search(rf"\bdef\s+{FUNCTION}\b", reply):
        raise GateError(f"no code: the reply has no function {FUNCTION}(obs, action)")
    try:
        ast.parse(reply)
        return reply.strip("\n") + "\n"
    except SyntaxError:
        pass
    lines = reply.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s*def\s+{FUNCTION}\b", line))
    body = [lines[start]]
    for line in lines[start + 1:]:
        if line.strip() and not line[:1].isspace():
            break
        body.append(line)
    return "\n".join(body).strip("\n") + "\n"


def _check_module(tree: ast.Module) -> None:
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the module docstring
    functions = [n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not functions:
        raise GateError(f"no code: defines no function {FUNCTION}(obs, action)")
    if len(functions) > 1:
        names = ", ".join(f"'{f.name}' (line {f.lineno})" for f in functions)
        raise GateError(f"line {functions[1].lineno}: {len(functions)} functions {names}; "
                        f"only one, {FUNCTION}(obs, action), is allowed")
    for node in body:
        if node is not functions[0]:
            raise GateError(f"line {node.lineno}: module-level {_what(node)} is not allowed; "
                            f"only def {FUNCTION}(obs, action)")
    fn = functions[0]
    if isinstance(fn, ast.AsyncFunctionDef) or fn.name != FUNCTION:
        raise GateError(f"line {fn.lineno}: the function must be 'def {FUNCTION}(obs, action)', got '{fn.name}'")
    args = fn.args
    extra = args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg or args.defaults
    if tuple(a.arg for a in args.args) != ARGUMENTS or extra:
        raise GateError(f"line {fn.lineno}: the signature must be {FUNCTION}(obs, action)")
    if fn.decorator_list:
        raise GateError(f"line {fn.decorator_list[0].lineno}: decorators are not allowed")
    if tree.body[-1] is not fn:
        raise GateError(f"line {fn.lineno}: {FUNCTION} must be the last statement")


def _what(node: ast.AST) -> str:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return "import"
    return type(node).__name__.lower() if isinstance(node, ast.stmt) else "code"


_REJECTED: dict[type[ast.AST], str] = {
    ast.Import: "import statements are not allowed",
    ast.ImportFrom: "import statements are not allowed",
    ast.Global: "'global' is not allowed",
    ast.Nonlocal: "'nonlocal' is not allowed",
    ast.FunctionDef: "a nested function is not allowed",
    ast.AsyncFunctionDef: "a nested function is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ClassDef: "a class is not allowed",
    ast.With: "'with' is not allowed",
    ast.AsyncWith: "'with' is not allowed",
    ast.Try: "'try' is not allowed (it hides failures from the search and the sandbox's checks)",
    ast.TryStar: "'try' is not allowed (it hides failures from the search and the sandbox's checks)",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    ast.Await: "'await' is not allowed",
    ast.AsyncFor: "'async for' is not allowed",
}


class _Checker(ast.NodeVisitor):
    """Walks ``compute_reward`` (the function node itself included): every rule but the module-level ones."""

    def __init__(self) -> None:
        self.locals: set[str] = set(ARGUMENTS)
        self.depth = 0

    def visit(self, node: ast.AST) -> None:
        reason = _REJECTED.get(type(node))
        if reason is not None and not (self.depth == 0 and isinstance(node, ast.FunctionDef)):
            _fail(node, reason)
        self.depth += 1
        super().visit(node)
        self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # noqa: N802 - ast.NodeVisitor's naming
        for sub in ast.walk(node):  # every name bound anywhere in the body is a local of the function
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
                self._check_binding(sub, sub.id)
                self.locals.add(sub.id)
            elif isinstance(sub, ast.arg) and sub.arg not in ARGUMENTS:
                _fail(sub, f"argument '{sub.arg}' is not allowed")
        self.generic_visit(node)

    def _check_binding(self, node: ast.AST, name: str) -> None:
        if name.startswith("_") and name != "_":
            _fail(node, f"name '{name}' is not allowed (names starting with '_')")
        if name in MODULES or name in BUILTINS:
            _fail(node, f"assigning to '{name}' is not allowed")

    def visit_Name(self, node: ast.Name) -> None:  # noqa: N802
        name = node.id
        if name.startswith("_") and name != "_":
            _fail(node, f"name '{name}' is not allowed (names starting with '_')")
        if name not in self.locals and name not in MODULES and name not in BUILTINS:
            _fail(node, f"name '{name}' is not allowed (only obs, action, torch, math, locals and allowed builtins)")

    def visit_Attribute(self, node: ast.Attribute) -> None:  # noqa: N802
        self.generic_visit(node)  # the innermost attribute first: the one a reader sees first on the line
        if not isinstance(node.ctx, ast.Load):
            _fail(node, f"assigning or deleting attribute '{node.attr}' is not allowed")
        if node.attr not in ATTRIBUTES:
            _fail(node, f"attribute '{node.attr}' is not allowed")

    def visit_Call(self, node: ast.Call) -> None:  # noqa: N802
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in BUILTINS:
                _fail(node, f"calling '{func.id}' is not allowed (only allowed builtins, torch and tensor methods)")
        elif not isinstance(func, ast.Attribute):
            _fail(node, f"calling a {type(func).__name__.lower()} is not allowed "
                        "(only allowed builtins, torch and tensor methods)")
        self.generic_visit(node)


def _fail(node: ast.AST, reason: str) -> None:
    raise GateError(f"line {getattr(node, 'lineno', '?')}: {reason}")
