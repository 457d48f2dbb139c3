"""Reward-code candidates shared by the gate and sandbox tests: a good one and the bad ones of issue 5."""

from __future__ import annotations

import numpy as np

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.core.specs import StateSlice

SPEC = EnvSpec(name="metaworld/drawer-open-v3", observations={"state": ArraySpec((39,))},
               action=ActionSpec(4, "ee_delta", scale=(1.0,) * 4, offset=(0.0,) * 4),
               state_slices=(StateSlice("hand_pos", 0, 3), StateSlice("obj_pos", 4, 7),
                             StateSlice("goal_pos", 36, 39)))

GOOD = '''"""Reach the handle, gently."""
def compute_reward(obs, action):
    dist = torch.linalg.norm(obs["hand_pos"] - obs["obj_pos"], dim=-1)
    reach = 1.0 - torch.tanh(5.0 * dist)
    effort = 0.01 * action.square().sum(dim=-1)
    return reach - effort, {"reach": reach, "effort": effort}
'''


def batch(n: int = 64, seed: int = 0, high: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    states = rng.uniform(-0.4, 0.4, (n, 39)).astype(np.float32)
    if high:
        states[n // 2, 2] = 0.7  # one hand above 0.5 m
    return states, rng.uniform(-1, 1, (n, 4)).astype(np.float32)


def good_reference(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    reach = 1.0 - np.tanh(5.0 * np.linalg.norm(states[:, 0:3] - states[:, 4:7], axis=1))
    return (reach - 0.01 * (actions ** 2).sum(axis=1)).astype(np.float32)


def fn(body: str) -> str:
    """``def compute_reward(obs, action):`` around an indented ``body``."""
    lines = body.strip("\n").splitlines()
    return "def compute_reward(obs, action):\n" + "\n".join("    " + line for line in lines) + "\n"


# name -> (source, what the gate says). Each runs in the sandbox too (tests/rewards/codegen/test_sandbox.py).
GATE_REJECTS: dict[str, tuple[str, str]] = {
    "socket": (fn("import socket\ns = socket.socket()\nreturn action.sum(dim=-1), {}"),
               "line 2: import of 'socket' is not allowed"),
    "urllib": (fn("from urllib.request import urlopen\nurlopen('http://127.0.0.1:1')\nreturn action.sum(-1), {}"),
               "line 2: import of 'urllib.request' is not allowed"),
    "open": (fn("open('/work/x', 'w').write('x')\nreturn action.sum(-1), {}"), "line 2: calling 'open' is not allowed"),
    "tofile": (fn("obs['state'].numpy().tofile('/work/x')\nreturn action.sum(-1), {}"),
               "line 2: attribute 'numpy' is not allowed"),
    "np.load": (fn("x = np.load('/etc/shadow')\nreturn action.sum(-1), {}"),
                "line 2: attribute 'np.load' is not allowed"),
    "torch.save": (fn("torch.save(obs['state'], '/work/x.pt')\nreturn action.sum(-1), {}"),
                   "line 2: attribute 'save' is not allowed"),
    "torch.load": (fn("x = torch.load('/work/x.pt')\nreturn action.sum(-1), {}"),
                   "line 2: attribute 'load' is not allowed"),
    "torch.from_file": (fn("x = torch.from_file('/etc/passwd')\nreturn action.sum(-1), {}"),
                        "line 2: attribute 'from_file' is not allowed"),
    "os.system": (fn("import os\nos.system('id')\nreturn action.sum(-1), {}"),
                  "line 2: import of 'os' is not allowed"),
    "subprocess": (fn("import subprocess\nsubprocess.run(['id'])\nreturn action.sum(-1), {}"),
                   "line 2: import of 'subprocess' is not allowed"),
    "np.f2py.os": (fn("numpy.f2py.os.system('id')\nreturn action.sum(-1), {}"),
                   "line 2: name 'numpy' is not allowed"),
    "np.ctypeslib": (fn("c = torch.np.ctypeslib.ctypes\nreturn action.sum(-1), {}"),
                     "line 2: attribute 'np' is not allowed"),
    "dunder walk": (fn("x = ().__class__.__bases__[0].__subclasses__()\nreturn action.sum(-1), {}"),
                    "line 2: attribute '__class__' is not allowed"),
    "dunder name": (fn("x = __builtins__\nreturn action.sum(-1), {}"),
                    "line 2: name '__builtins__' is not allowed (names starting with '_')"),
    "getattr": (fn("x = getattr((), '__cla' + 'ss__')\nreturn action.sum(-1), {}"),
                "line 2: calling 'getattr' is not allowed"),
    "format string": (fn("x = '{0.__class__.__bases__}'.format(obs)\nreturn action.sum(-1), {}"),
                      "line 2: attribute 'format' is not allowed"),
    "f-string": (fn("x = f'{obs.__class__}'\nreturn action.sum(-1), {}"),
                 "line 2: attribute '__class__' is not allowed"),
    "format builtin": (fn("x = format(obs, '')\nreturn action.sum(-1), {}"), "line 2: calling 'format' is not allowed"),
    "eval": (fn("return eval('action.sum(-1)'), {}"), "line 2: calling 'eval' is not allowed"),
    "exec": (fn("exec('import os')\nreturn action.sum(-1), {}"), "line 2: calling 'exec' is not allowed"),
    "type": (fn("t = type(obs)\nreturn action.sum(-1), {}"), "line 2: calling 'type' is not allowed"),
    "vars": (fn("v = vars(torch)\nreturn action.sum(-1), {}"), "line 2: calling 'vars' is not allowed"),
    "globals": (fn("g = globals()\nreturn action.sum(-1), {}"), "line 2: calling 'globals' is not allowed"),
    "private attribute": (fn("x = torch._C\nreturn action.sum(-1), {}"), "line 2: attribute '_C' is not allowed"),
    "fork bomb": (fn("import os\nwhile True:\n    os.fork()"), "line 2: import of 'os' is not allowed"),
    "kill parent": (fn("import os\nos.kill(os.getppid(), 9)\nreturn action.sum(-1), {}"),
                    "line 2: import of 'os' is not allowed"),
    "os._exit": (fn("import os\nos._exit(0)"), "line 2: import of 'os' is not allowed"),
    "monkey-patch torch": (fn("torch.sum = torch.mean\nreturn action.sum(-1), {}"),
                           "line 2: assigning or deleting attribute 'sum' is not allowed"),
    "monkey-patch Tensor": (fn("torch.Tensor.sum = torch.mean\nreturn action.sum(-1), {}"),
                            "line 2: assigning or deleting attribute 'sum' is not allowed"),
    "rebind builtin": (fn("abs = torch.save\nreturn action.sum(-1), {}"), "line 2: assigning to 'abs' is not allowed"),
    "call a local": (fn("f = obs.get\nx = f('state')\nreturn action.sum(-1), {}"),
                     "line 3: calling 'f' is not allowed"),
    "call a subscript": (fn("x = [abs][0](1)\nreturn action.sum(-1), {}"),
                         "line 2: calling a subscript is not allowed"),
    "lambda": (fn("f = lambda: 1\nreturn action.sum(-1), {}"), "line 2: lambda is not allowed"),
    "global": (fn("global torch\nreturn action.sum(-1), {}"), "line 2: 'global' is not allowed"),
    "with": (fn("with torch.no_grad():\n    r = action.sum(-1)\nreturn r, {}"), "line 2: 'with' is not allowed"),
    "try": (fn("try:\n    r = action.sum(-1)\nexcept Exception:\n    r = 0\nreturn r, {}"),
            "line 2: 'try' is not allowed"),
    "module-level code": ("import os\n" + fn("return action.sum(-1), {}"), "line 1: import of 'os' is not allowed"),
    "module-level call": ("print(1)\n" + fn("return action.sum(-1), {}"),
                          "line 1: module-level expr is not allowed"),
    "decorator": ("@functools.lru_cache\n" + fn("return action.sum(-1), {}"),
                  "line 1: decorator 'functools.lru_cache' is not allowed"),
    "wrong signature": ("def compute_reward(obs, *args):\n    return action.sum(-1), {}\n",
                        "line 1: the signature must be compute_reward(obs, action)"),
    "nested function": (fn("def helper(x):\n    return x\nreturn helper(action.sum(-1)), {}"),
                        "line 2: a nested function is not allowed"),
    "two compute_reward": (fn("return action.sum(-1), {}") * 2, "compute_reward is defined 2 times (lines 1, 3)"),
    "match walk-around": (fn("match obs['state']:\n    case torch.Tensor(__dict__=d):\n        d['sum'] = d['save']\n"
                             "return action.sum(-1), {}"), "line 2: a 'match' statement is not allowed"),
    "helper rebinds a module": ("def torch(x):\n    return x\n" + fn("return action.sum(-1), {}"),
                                "line 1: assigning to 'torch' is not allowed"),
    "syntax error": ("def compute_reward(obs, action:\n    return 1\n", "syntax error at line 1"),
    "no code": ("   \n", "no code: the text is empty"),
    "no function": ('"""just a docstring"""\n', "no code: defines no function compute_reward(obs, action)"),
}
