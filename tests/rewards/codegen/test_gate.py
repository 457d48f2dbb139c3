from __future__ import annotations

import ast
import re

import pytest

from robot_rl.rewards.code_reward import RewardCodeError
from robot_rl.rewards.codegen.gate import ALLOWED_NODES, GateError, check_source, extract_code
from robot_rl.rewards.codegen.generate import prepare_reply
from tests.rewards.codegen.candidates import GATE_REJECTS, GOOD, fn


@pytest.mark.parametrize("name", sorted(GATE_REJECTS))
def test_the_gate_rejects_each_bad_candidate_with_a_one_line_reason(name: str) -> None:
    source, reason = GATE_REJECTS[name]
    with pytest.raises(GateError, match=re.escape(reason)) as e:
        check_source(source)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, RewardCodeError)


def test_the_gate_accepts_ordinary_reward_code() -> None:
    check_source(GOOD)
    check_source(fn('''
hand, handle = obs["hand_pos"], obs["obj_pos"]
dists = [torch.linalg.norm(hand - handle, dim=-1), (obs["goal_pos"] - handle).norm(dim=-1)]
total = sum(d for d in dists)
scale = max(1.0, math.sqrt(2.0))
for i, d in enumerate(dists):
    total = total + i * torch.clamp(d, min=0.0, max=1.0)
if not isinstance(total, torch.Tensor):
    raise ValueError(f"bad total {scale:.2f}")
components = {"reach": torch.exp(-dists[0]), "open": torch.where(dists[1] < 0.1, 1.0, 0.0)}
components.update({"effort": action.square().sum(dim=-1)})
for _ in range(2):
    total = total * 0.5
return -total / scale, components
'''))


def test_extract_code_takes_the_fenced_block_that_defines_compute_reward() -> None:
    reply = f"Here is the reward.\n```python\n{GOOD}```\nand a test:\n```python\nprint(1)\n```\n"
    assert extract_code(reply) == GOOD
    assert extract_code(GOOD) == GOOD  # a bare reply that is code
    with pytest.raises(GateError, match=r"no code: the reply has no function compute_reward\(obs, action\)"):
        extract_code("I cannot write this reward, sorry.")
    with pytest.raises(GateError, match="the reply has 2 code blocks that define compute_reward, expected one"):
        extract_code(f"```python\n{GOOD}```\nor\n```py\n{GOOD}```")


# ---- the allow-list of node types --------------------------------------------------------------------------------

def _body(code: str) -> str:
    return fn(code + "\nreturn action.sum(-1), {}")


# refused node type -> (code that holds it, the reason the gate gives). Module-level where it cannot sit in a body.
REFUSED: dict[str, tuple[str, str]] = {
    "Import": (_body("import os"), "line 2: import of 'os' is not allowed"),
    "ImportFrom": (_body("from os import path"), "line 2: import of 'os' is not allowed"),
    "alias": (_body("import subprocess as sp"), "line 2: import of 'subprocess' is not allowed"),
    "Global": (_body("global torch"), "line 2: 'global' is not allowed"),
    "Nonlocal": ("def helper():\n    nonlocal torch\n" + fn("return action.sum(-1), {}"),
                 "line 2: 'nonlocal' is not allowed"),
    "ClassDef": (_body("class Hook:\n    pass"), "line 2: a class is not allowed"),
    "AsyncFunctionDef": ("async def compute_reward(obs, action):\n    return action.sum(-1), {}\n",
                         "line 1: an async function is not allowed"),
    "FunctionDef (nested)": (_body("def inner():\n    return 1"), "line 2: a nested function is not allowed"),
    "Lambda": (_body("f = lambda x: x"), "line 2: lambda is not allowed"),
    "With": (_body("with torch.no_grad():\n    pass"), "line 2: 'with' is not allowed"),
    "withitem": (_body("with torch.no_grad() as g:\n    pass"), "line 2: 'with' is not allowed"),
    "AsyncWith": (_body("async with torch.no_grad():\n    pass"), "line 2: 'async with' is not allowed"),
    "AsyncFor": (_body("async for i in action:\n    pass"), "line 2: 'async for' is not allowed"),
    "Await": (_body("x = await action"), "line 2: 'await' is not allowed"),
    "Yield": (_body("yield action"), "line 2: 'yield' is not allowed"),
    "YieldFrom": (_body("yield from action"), "line 2: 'yield from' is not allowed"),
    "Try": (_body("try:\n    pass\nfinally:\n    pass"), "line 2: 'try' is not allowed"),
    "ExceptHandler": (_body("try:\n    pass\nexcept Exception:\n    pass"), "line 2: 'try' is not allowed"),
    "TryStar": (_body("try:\n    pass\nexcept* ValueError:\n    pass"), "line 2: 'try' is not allowed"),
    "AnnAssign": (_body("x: int = 1"), "line 2: an annotated assignment is not allowed"),
    "Match": (_body("match action:\n    case _:\n        pass"), "line 2: a 'match' statement is not allowed"),
    "match_case": (_body("match action:\n    case x if x:\n        pass"), "line 2: a 'match' statement"),
    "MatchValue": (_body("match action:\n    case math.pi:\n        pass"), "line 2: a 'match' statement"),
    "MatchSingleton": (_body("match action:\n    case None:\n        pass"), "line 2: a 'match' statement"),
    "MatchSequence": (_body("match action:\n    case [a, b]:\n        pass"), "line 2: a 'match' statement"),
    "MatchStar": (_body("match action:\n    case [a, *rest]:\n        pass"), "line 2: a 'match' statement"),
    "MatchMapping": (_body("match obs:\n    case {'state': s, **rest}:\n        pass"), "line 2: a 'match' statement"),
    "MatchClass": (_body("match obs['state']:\n    case torch.Tensor(__dict__=d):\n        d['sum'] = d['save']"),
                   "line 2: a 'match' statement"),
    "MatchAs": (_body("match action:\n    case [a] as whole:\n        pass"), "line 2: a 'match' statement"),
    "MatchOr": (_body("match action:\n    case 1 | 2:\n        pass"), "line 2: a 'match' statement"),
}
_ABSTRACT = {"mod", "stmt", "expr", "expr_context", "boolop", "operator", "unaryop", "cmpop", "excepthandler",
             "type_ignore", "pattern", "type_param", "slice"}
_OTHER_MODES = {"Interactive", "Expression", "FunctionType", "TypeIgnore"}  # not from ast.parse(mode="exec")
_DEPRECATED = {"Num", "Str", "Bytes", "NameConstant", "Ellipsis", "Index", "ExtSlice", "Suite", "AugLoad", "AugStore",
               "Param"}


def _node_types() -> set[type[ast.AST]]:
    out: set[type[ast.AST]] = set()
    todo = [ast.AST]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__ == "ast" and sub not in out:
                out.add(sub)
                todo.append(sub)
    return {t for t in out if t.__name__ not in _ABSTRACT | _OTHER_MODES | _DEPRECATED}


def test_every_node_type_of_this_python_is_allowed_or_has_a_refusal_test() -> None:
    covered = {type(n) for code, _ in REFUSED.values() for n in ast.walk(ast.parse(code))}
    missing = {t.__name__ for t in _node_types() - set(ALLOWED_NODES) - covered}
    assert not missing, f"node types neither allowed nor tested as refused: {sorted(missing)}"
    for name in REFUSED:
        kind = getattr(ast, name.split()[0], None)
        assert kind is not None and kind in covered, name
        if kind is not ast.FunctionDef:
            assert kind not in ALLOWED_NODES, name


@pytest.mark.parametrize("node", sorted(REFUSED))
def test_each_refused_node_type_is_refused_directly_and_through_the_reply_path(node: str) -> None:
    code, reason = REFUSED[node]
    with pytest.raises(GateError, match=re.escape(reason)):
        check_source(code)
    prepared = prepare_reply(f"```python\n{code}```")
    if node == "AnnAssign":  # normalization turns it into a plain assignment
        assert prepared.code is not None and "x = 1" in prepared.code
    else:
        assert prepared.code is None and any(r.startswith(reason) for r in prepared.reasons), prepared.reasons


def test_the_match_walk_around_is_refused_before_anything_inside_it_is_looked_at() -> None:
    code, _ = REFUSED["MatchClass"]
    with pytest.raises(GateError) as e:
        check_source(code)
    assert e.value.reasons == ["line 2: a 'match' statement is not allowed (its patterns read attributes no "
                               "allow-list sees)"]


def test_the_gate_reports_every_reason_in_line_order() -> None:
    code = ("import os\n" + "SECRET = open('/etc/passwd')\n"
            + fn("x = obs.__class__\ntorch.sum = None\ntry:\n    pass\nexcept Exception:\n    pass\n"
                 "return np.load('x'), {}"))
    with pytest.raises(GateError) as e:
        check_source(code)
    assert e.value.reasons == [
        "line 1: import of 'os' is not allowed",
        "line 2: calling 'open' is not allowed (only allowed builtins, the module's functions, and torch, np and "
        "tensor methods)",
        "line 4: attribute '__class__' is not allowed",
        "line 5: assigning or deleting attribute 'sum' is not allowed",
        "line 6: 'try' is not allowed (it hides failures from the search and the sandbox's checks)",
        "line 10: attribute 'np.load' is not allowed (np holds only allow-listed NumPy functions)",
    ]
    assert str(e.value) == "; ".join(e.value.reasons) and "\n" not in str(e.value)


def test_helpers_and_constants_follow_the_same_rules() -> None:
    check_source("GOAL = torch.tensor([0.1, 0.2, 0.3])\nW = {'reach': 1.0}\n\n"
                 "def dist(a, b=GOAL):\n    return torch.norm(a - b, dim=-1)\n\n"
                 + fn("return -W['reach'] * dist(obs['hand_pos']), {}"))
    bad = ("_hidden = 1\nHOOK = obs\n\ndef helper(x, __y=1):\n    return x.__class__\n\n"
           + fn("h = helper\nreturn h(action), {}"))
    with pytest.raises(GateError) as e:
        check_source(bad)
    assert e.value.reasons == [
        "line 1: name '_hidden' is not allowed (names starting with '_')",
        "line 2: name 'obs' is not allowed (only obs, action, torch, math, np, allowed builtins, the module's "
        "constants and functions, and locals)",
        "line 4: name '__y' is not allowed (names starting with '_')",
        "line 5: attribute '__class__' is not allowed",
        "line 9: calling 'h' is not allowed (only allowed builtins, the module's functions, and torch, np and "
        "tensor methods)",
    ]


def test_helpers_and_constants_from_the_replys_other_blocks_come_along() -> None:
    helper = "import torch\nSCALE = 2.0\n\ndef dist(a, b):\n    return SCALE * (a - b).norm(dim=-1)\n"
    reward = fn("return -dist(obs['hand_pos'], 0.0)")
    reply = (f"Helper:\n```python\n{helper}\ndef unused():\n    return 1\n```\nReward:\n```python\n{reward}```\n"
             "Try it:\n```python\nobs = {}\nprint(compute_reward(obs, None))\n```\n")
    assert extract_code(reply) == helper.replace("torch\n", "torch\n\n").rstrip("\n") + "\n\n\n" + reward
    assert extract_code(f"```python\n{GOOD}```\n```python\nx = 1\n```") == GOOD  # nothing it uses: nothing added
