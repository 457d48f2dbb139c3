"""Static gate on LLM-written reward code: an allow-list check of its AST, before it runs. Every node type, every
attribute, every name and every call must be on a list; anything not listed (``match``, syntax newer than this file,
``import``, ``class``, ``lambda``, ``with``, ``try``, ...) is refused. The gate reports every reason at once.

Accepted (the form ``normalize.py`` brings LLM replies to): a module of a docstring, constants (``NAME = expr``),
helper functions and one ``def compute_reward(obs, action)``, in any order. Code uses only ``obs``, ``action``,
``torch``, ``math``, ``np`` (a namespace of the allow-listed NumPy functions in ``NUMPY``), the builtins in
``BUILTINS``, its module's constants and helpers, and its own locals; it calls only those builtins, helpers and
attributes named in ``ATTRIBUTES``, and reads only attributes named there.

Rejected, with ``GateError("line N: ...; line M: ...")``: any node type not in ``ALLOWED_NODES`` (a ``match``
statement's class pattern ``case torch.Tensor(__dict__=d)`` binds attributes no ``ast.Attribute`` shows; the gate
never looks inside a refused node); names or attributes starting with ``_`` (dunders, privates:
``().__class__.__bases__[0].__subclasses__()``), keyword arguments starting with ``_``; attributes off the list
(``x.numpy()``, ``torch.save``, ``np.load``, ``"{0.__class__}".format(x)``: ``format`` is not on it); assigning or
deleting attributes (no monkey-patching ``torch.sum``); nested functions; decorators and annotations (``normalize``
strips the inert ones); calls of anything but an allowed builtin, a helper of the module or an allowed attribute (a
local, a subscript, a call's result); rebinding ``torch``, ``math``, ``np`` or an allowed builtin.

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
from collections.abc import Sequence

from robot_rl.rewards.codegen.errors import RewardCodeError

FUNCTION = "compute_reward"
ARGUMENTS = ("obs", "action")
MODULES = ("torch", "math", "np")
"""Names reward code finds without importing: torch, math and ``np`` (only the functions in ``NUMPY``)."""

BUILTINS = frozenset({
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "float", "int", "isinstance", "len", "list", "max",
    "min", "pow", "print", "range", "reversed", "round", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "Exception", "IndexError", "KeyError", "NotImplementedError", "RuntimeError",
    "TypeError", "ValueError", "ZeroDivisionError",
})
"""Builtin names reward code may use; the worker's ``__builtins__`` holds exactly these (and nothing else)."""

_TORCH = """
    abs absolute acos acosh add addcmul all allclose amax amin any arange arccos arcsin arctan arctan2 argmax
    argmin as_tensor asin atan atan2 bmm bool broadcast_to cat cdist ceil chunk clamp clamp_max clamp_min clip cos
    cosh cosine_similarity count_nonzero cross cummax cummin cumprod cumsum deg2rad diag diff dist div dot e
    einsum empty_like eq erf exp exp2 expm1 eye finfo flatten flip float16 float32 float64 floor fmod full
    full_like gather ge gt heaviside hypot inf int32 int64 isclose isfinite isinf isnan kron le lerp linspace
    log log10 log1p log2 logaddexp logical_and logical_not logical_or logical_xor logsumexp long lt masked_fill
    matmul max maximum mean median min minimum mm mul nan nan_to_num ne neg norm normalize numel ones ones_like
    outer pairwise_distance pi pow prod rad2deg reciprocal relu remainder reshape round rsqrt sigmoid sign sin sinh
    smooth_l1_loss softmax softplus split sqrt square squeeze stack std sub sum tan tanh tensor tile topk transpose
    tril triu trunc unbind unsqueeze var vector_norm where zeros zeros_like linalg nn functional special Tensor
    dtype float int
"""
_TENSOR = """
    T abs amax amin any all argmax argmin bool clamp clamp_max clamp_min clip clone contiguous cos cpu cumsum detach
    device dim div double dtype eps exp expand expand_as flatten float gather half index_select indices int isnan
    item log long masked_fill max mean min mul ndim neg new_full new_ones new_tensor new_zeros norm numel permute pow
    prod repeat reshape round shape sigmoid sign sin size sqrt square squeeze std sub sum t tanh tiny to tolist
    transpose type type_as unsqueeze values view view_as
    abs_ add_ clamp_ clamp_max_ clamp_min_ clip_ div_ exp_ fill_ masked_fill_ mul_ neg_ pow_ sigmoid_ sqrt_ sub_
    tanh_ zero_
    astype ravel
"""
_MATH = """
    acos asin atan atan2 ceil cos cosh degrees e exp fabs floor hypot inf isfinite isinf isnan log log10 log1p log2 nan
    pi radians sin sinh sqrt tan tanh tau
"""
_CONTAINERS = "append copy extend get items keys pop setdefault update values"

NUMPY = frozenset("""
    abs absolute all allclose amax amin any arange arccos arcsin arctan arctan2 argmax argmin around array asarray
    bool_ ceil clip concatenate cos cosh count_nonzero cross cumsum deg2rad degrees diff dot e einsum exp expand_dims
    expm1 eye float32 float64 floor full full_like hstack hypot inf int32 int64 isclose isfinite isnan linalg linspace
    log log10 log1p log2 logical_and logical_not logical_or matmul max maximum mean median min minimum nan
    nan_to_num newaxis ones ones_like outer pi power prod rad2deg radians reshape round sign sin sinh sort sqrt square
    squeeze stack std sum tan tanh tile transpose vstack where zeros zeros_like
""".split())
"""What ``np`` holds in the worker: these NumPy functions and constants (nothing that reads or writes files or
memory: no ``load``, ``save``, ``fromfile``, ``frombuffer``, ``memmap``, ``ctypeslib``, ``lib``, ``vectorize``)."""
NUMPY_LINALG = frozenset({"norm"})
"""What ``np.linalg`` holds."""

ATTRIBUTES = frozenset((_TORCH + _TENSOR + _MATH + _CONTAINERS).split()) | NUMPY | NUMPY_LINALG
"""Attribute names reward code may read or call, on any object: torch functions, tensor and array methods
(in-place arithmetic included), ``math``, ``np``, and the read-only or local-only methods of dicts and lists.
Nothing that reaches files, memory or other modules (no ``numpy``, ``tofile``, ``save``, ``load``, ``from_file``,
``storage``, ``data_ptr``, ``ctypes``, ``format``)."""

_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.MatMult, ast.Div, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.BitOr,
              ast.BitXor, ast.BitAnd, ast.FloorDiv, ast.And, ast.Or, ast.Invert, ast.Not, ast.UAdd, ast.USub, ast.Eq,
              ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn)
ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset({
    ast.Module, ast.FunctionDef, ast.arguments, ast.arg,
    # statements
    ast.Return, ast.Delete, ast.Assign, ast.AugAssign, ast.For, ast.While, ast.If, ast.Raise, ast.Assert, ast.Expr,
    ast.Pass, ast.Break, ast.Continue,
    # expressions
    ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Dict, ast.Set, ast.ListComp, ast.SetComp,
    ast.DictComp, ast.GeneratorExp, ast.Compare, ast.Call, ast.keyword, ast.FormattedValue, ast.JoinedStr,
    ast.Constant, ast.Attribute, ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice,
    ast.comprehension, ast.Load, ast.Store, ast.Del, *_OPERATORS,
})
"""Every AST node type the gate accepts (by exact type); any other is refused with its name, unlooked-into."""

_REFUSED_NAMES: dict[str, str] = {
    "Global": "'global'",
    "Nonlocal": "'nonlocal'", "AsyncFunctionDef": "an async function", "Lambda": "lambda", "ClassDef": "a class",
    "With": "'with'", "AsyncWith": "'async with'", "Yield": "'yield'", "YieldFrom": "'yield from'",
    "Await": "'await'", "AsyncFor": "'async for'", "Match": "a 'match' statement", "Try": "'try'",
    "TryStar": "'try'", "AnnAssign": "an annotated assignment", "TypeAlias": "a 'type' alias statement",
}
_WHY = {"Try": " (it hides failures from the search and the sandbox's checks)",
        "TryStar": " (it hides failures from the search and the sandbox's checks)",
        "Match": " (its patterns read attributes no allow-list sees)"}


class GateError(RewardCodeError):
    """The reward code failed the static gate: ``reasons`` (each one line, ``line N: ...`` where it can), and the
    message, all of them joined by ``; `` on one line."""

    def __init__(self, message: str | list[str]) -> None:
        self.reasons = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(self.reasons))


def check_source(source: str) -> ast.Module:
    """Parse ``source`` and check it against the gate; return the module AST or raise ``GateError`` (every reason)."""
    if not source.strip():
        raise GateError("no code: the text is empty")
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise GateError(f"syntax error at line {e.lineno}: {e.msg}") from None
    reasons = gate_reasons(tree)
    if reasons:
        raise GateError(reasons)
    return tree


def gate_reasons(tree: ast.Module) -> list[str]:
    """Every reason ``tree`` fails the gate, in source order (empty: accepted). Line numbers are the nodes' own."""
    return _Gate(tree).run()


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code in an LLM reply: the one fenced Python block that defines ``compute_reward`` (with the helper
    functions and constants it uses from the reply's other blocks put before it), else (no fence) the whole reply if
    it parses, else the ``def`` line with its indented body out of the prose around it. ``GateError`` (one line) when
    there is no such code or two blocks define it; ``check_source`` judges the code itself."""
    blocks = [body for lang, body in _FENCE.findall(reply) if lang.lower() in ("", "python", "py", "python3")]
    defining = [b for b in blocks if re.search(rf"\bdef\s+{FUNCTION}\b", b)]
    if len(defining) > 1:
        raise GateError(f"the reply has {len(defining)} code blocks that define {FUNCTION}, expected one")
    if defining:
        return _with_helpers(defining[0].strip("\n") + "\n", [b for b in blocks if b is not defining[0]])
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


def _with_helpers(code: str, others: list[str]) -> str:
    """``code`` with the top-level functions and constants of ``others`` (and those blocks' imports) that it uses but
    does not define put before it, as an LLM that writes each helper in its own block means them."""
    try:
        tree = ast.parse(code)
        parsed = [(text, ast.parse(text)) for text in others]
    except SyntaxError:
        return code
    taken: list[tuple[int, int, str]] = []  # (block, first line, source)
    wanted = _free_names(tree)
    while wanted:
        found: set[str] = set()
        for i, (text, module) in enumerate(parsed):
            lines = text.splitlines()
            for node in module.body:
                names = _defined_by(node)
                if names & wanted and not any(t[:2] == (i, node.lineno) for t in taken):
                    first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
                    taken.append((i, node.lineno, "\n".join(lines[first - 1:node.end_lineno])))
                    found |= _free_names(ast.Module([node], []))
                    for imp in (n for n in module.body if isinstance(n, ast.Import | ast.ImportFrom)):
                        if not any(t[:2] == (i, imp.lineno) for t in taken):
                            taken.append((i, imp.lineno, "\n".join(lines[imp.lineno - 1:imp.end_lineno])))
        wanted = found - {name for _, _, src in taken for name in _defined(src)} - _defined(code)
    if not taken:
        return code
    return "\n\n".join(src for _, _, src in sorted(taken)) + "\n\n\n" + code


def _defined_by(node: ast.AST) -> set[str]:
    """The names a top-level statement binds: a function's, a constant's, an import's."""
    if isinstance(node, ast.FunctionDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return _names_stored(node.targets)
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).partition(".")[0] for a in node.names}
    return set()


def _defined(source: str) -> set[str]:
    return {name for node in ast.parse(source).body for name in _defined_by(node)}


def _free_names(tree: ast.Module) -> set[str]:
    """Names ``tree`` reads that nothing in it binds (its functions' arguments and locals, imports included)."""
    bound = _names_stored(tree.body) | {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    bound |= {name for n in ast.walk(tree) for name in _defined_by(n)}
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loaded - bound - set(MODULES) - set(BUILTINS)


def node_label(node: ast.AST) -> str:
    """How a reason names a refused node: ``a 'match' statement``, ``'with'``, else ``syntax 'NodeType'``."""
    name = type(node).__name__
    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
        return f"import of {', '.join(repr(m) for m in modules)}"
    return _REFUSED_NAMES.get(name, f"syntax '{name}'")


def _names_stored(nodes: Sequence[ast.AST]) -> set[str]:
    out: set[str] = set()
    for root in nodes:
        for sub in ast.walk(root):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
                out.add(sub.id)
    return out


class _Gate:
    """One pass over the module: module-level rules, then each function and each constant's expression."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.reasons: list[tuple[int, str]] = []
        self.helpers: set[str] = set()
        self.constants: set[str] = set()
        self.called: set[int] = set()
        """Names already reported as a call (``open(...)``): not again as a name."""

    def fail(self, node: ast.AST, reason: str) -> None:
        line = getattr(node, "lineno", 0)
        if (line, reason) not in self.reasons:
            self.reasons.append((line, reason))

    def run(self) -> list[str]:
        body = list(self.tree.body)
        functions = [n for n in body if isinstance(n, ast.FunctionDef)]
        rewards = [f for f in functions if f.name == FUNCTION]
        if not rewards:
            named = ", ".join(f"'{f.name}'" for f in functions)
            self.fail(self.tree, f"no code: defines no function {FUNCTION}(obs, action)"
                                 + (f" (only {named})" if named else ""))
        elif len(rewards) > 1:
            self.fail(rewards[1], f"{FUNCTION} is defined {len(rewards)} times (lines "
                                  f"{', '.join(str(f.lineno) for f in rewards)}), expected once")
        seen: dict[str, int] = {}
        for f in functions:
            if f.name in seen and f.name != FUNCTION:
                self.fail(f, f"function '{f.name}' is defined twice (lines {seen[f.name]} and {f.lineno})")
            seen.setdefault(f.name, f.lineno)
            if f.name != FUNCTION:
                self.check_binding(f, f.name, "a function")
                self.helpers.add(f.name)
        for node in body:
            if isinstance(node, ast.Assign):
                for name in _names_stored(node.targets):
                    self.constants.add(name)
        for node in body:
            self.module_statement(node)
        self.reasons.sort(key=lambda r: r[0])
        return [f"line {line}: {text}" if line else text for line, text in self.reasons]

    def module_statement(self, node: ast.stmt) -> None:
        if type(node) not in ALLOWED_NODES:
            self.refuse(node)
        elif isinstance(node, ast.FunctionDef):
            self.function(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            pass  # a docstring
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if not all(isinstance(t, ast.Name | ast.Tuple | ast.List | ast.Store) for t in ast.walk(target)):
                    self.fail(node, "a module-level assignment may only bind names (NAME = value)")
            for name in sorted(_names_stored(node.targets)):
                self.check_binding(node, name, "a constant")
                if name in self.helpers or name == FUNCTION:
                    self.fail(node, f"'{name}' is both a function and a constant")
            self.expression(node.value, set())
        else:
            self.fail(node, f"module-level {type(node).__name__.lower()} is not allowed; only constants "
                            f"(NAME = value), helper functions and def {FUNCTION}(obs, action)")

    def refuse(self, node: ast.AST) -> None:
        self.fail(node, f"{node_label(node)} is not allowed{_WHY.get(type(node).__name__, '')}")

    def check_binding(self, node: ast.AST, name: str, what: str) -> None:
        if name.startswith("_") and name != "_":
            self.fail(node, f"name '{name}' is not allowed (names starting with '_')")
        elif name in MODULES or name in BUILTINS:
            self.fail(node, f"assigning to '{name}' is not allowed ({what} may not rebind it)")

    def function(self, fn: ast.FunctionDef) -> None:
        for d in fn.decorator_list:
            self.fail(d, f"decorator '{ast.unparse(d)}' is not allowed")
        args = fn.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs,
                  *([args.vararg] if args.vararg else []), *([args.kwarg] if args.kwarg else [])]
        if fn.returns is not None or any(a.annotation is not None for a in params):
            self.fail(fn, "annotations are not allowed")
        if fn.name == FUNCTION:
            extra = args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg or args.defaults
            if tuple(a.arg for a in args.args) != ARGUMENTS or extra:
                self.fail(fn, f"the signature must be {FUNCTION}(obs, action)")
        for a in params:
            self.check_binding(a, a.arg, "an argument")
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.expression(default, set())
        local = {a.arg for a in params} | _names_stored(fn.body)
        for name in sorted(_names_stored(fn.body)):
            node = next(n for s in fn.body for n in ast.walk(s) if isinstance(n, ast.Name) and n.id == name
                        and isinstance(n.ctx, ast.Store | ast.Del))
            self.check_binding(node, name, "a local")
        for stmt in fn.body:
            self.visit(stmt, local)

    def expression(self, node: ast.expr, local: set[str]) -> None:
        self.visit(node, local | _names_stored([node]))

    def visit(self, node: ast.AST, local: set[str]) -> None:
        kind = type(node)
        if kind not in ALLOWED_NODES:
            self.refuse(node)
            return  # nothing inside a refused node is looked at, or trusted
        if kind is ast.FunctionDef:
            self.fail(node, "a nested function is not allowed (define helpers at module level)")
            return
        if kind is ast.comprehension and node.is_async:  # type: ignore[attr-defined]
            self.fail(node, "'async for' is not allowed")
        if kind is ast.Attribute:  # the innermost attribute first: the one a reader sees first on the line
            self.visit(node.value, local)  # type: ignore[attr-defined]
            self.attribute(node)  # type: ignore[arg-type]
            return
        if kind is ast.Name:
            self.name(node, local)  # type: ignore[arg-type]
        elif kind is ast.Call:
            self.call(node, local)  # type: ignore[arg-type]
        elif kind is ast.keyword:
            arg = node.arg  # type: ignore[attr-defined]
            if arg is not None and arg.startswith("_"):
                self.fail(node, f"keyword argument '{arg}' is not allowed (names starting with '_')")
        for child in ast.iter_child_nodes(node):
            self.visit(child, local)

    def name(self, node: ast.Name, local: set[str]) -> None:
        name = node.id
        if id(node) in self.called:
            return
        if name.startswith("_") and name != "_":
            self.fail(node, f"name '{name}' is not allowed (names starting with '_')")
        elif isinstance(node.ctx, ast.Load) and name not in local and name not in self.constants \
                and name not in self.helpers and name != FUNCTION and name not in MODULES and name not in BUILTINS:
            self.fail(node, f"name '{name}' is not allowed (only obs, action, torch, math, np, allowed builtins, "
                            "the module's constants and functions, and locals)")

    def attribute(self, node: ast.Attribute) -> None:
        if not isinstance(node.ctx, ast.Load):
            self.fail(node, f"assigning or deleting attribute '{node.attr}' is not allowed")
        path = _np_path(node)
        if path is not None:
            allowed = NUMPY_LINALG if path == "np.linalg" else NUMPY if path == "np" else frozenset()
            if node.attr not in allowed:
                self.fail(node, f"attribute '{path}.{node.attr}' is not allowed (np holds only allow-listed "
                                "NumPy functions)")
                return
        if node.attr not in ATTRIBUTES:
            self.fail(node, f"attribute '{node.attr}' is not allowed")

    def call(self, node: ast.Call, local: set[str]) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in local or not (func.id in BUILTINS or func.id in self.helpers or func.id == FUNCTION):
                self.fail(node, f"calling '{func.id}' is not allowed (only allowed builtins, the module's "
                                "functions, and torch, np and tensor methods)")
                self.called.add(id(func))
        elif not isinstance(func, ast.Attribute):
            self.fail(node, f"calling a {type(func).__name__.lower()} is not allowed (only allowed builtins, the "
                            "module's functions, and torch, np and tensor methods)")


def _np_path(node: ast.Attribute) -> str | None:
    """``np`` or ``np.linalg`` (or a deeper path) when ``node`` is an attribute of it, else None."""
    parts = []
    value: ast.expr = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if isinstance(value, ast.Name) and value.id == "np":
        return ".".join(["np", *reversed(parts)])
    return None
