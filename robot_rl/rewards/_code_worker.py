"""Child process of ``code_reward.CodeReward``: loads the reward file, answers batches over stdin/stdout."""

from __future__ import annotations

import pickle
import runpy
import struct
import sys
import traceback
from typing import Any

_LEN = struct.Struct("<Q")


def _one_line(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"line {f.lineno}" for f in reversed(tb) if f.filename == sys.argv[1]), "")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}{' at ' + where if where else ''}: {text}"


def _evaluate(fn: Any, request: dict[str, Any]) -> dict[str, Any]:
    import torch

    obs = {k: torch.as_tensor(v) for k, v in request["obs"].items()}
    out = fn(obs, torch.as_tensor(request["action"]))
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        return {"error": "compute_reward must return (reward, components: dict)"}
    reward, components = out
    return {"reward": torch.as_tensor(reward).detach().float().cpu().numpy(),
            "components": {str(k): torch.as_tensor(v).detach().float().cpu().numpy() for k, v in components.items()}}


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    import torch  # noqa: F401 - loaded before the ready message, so that call timeouts exclude start-up

    try:
        fn = runpy.run_path(sys.argv[1]).get("compute_reward")
        load_error = None if callable(fn) else "defines no function compute_reward(obs, action)"
    except BaseException as e:  # report anything the file does while loading, then answer with it
        fn, load_error = None, f"failed to load: {_one_line(e)}"
    _send(stdout, {"ready": True})
    while True:
        head = stdin.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        request = pickle.loads(stdin.read(_LEN.unpack(head)[0]))
        if load_error is not None:
            reply: dict[str, Any] = {"error": load_error}
        else:
            try:
                reply = _evaluate(fn, request)
            except Exception as e:
                reply = {"error": f"compute_reward raised {_one_line(e)}"}
        _send(stdout, reply)


def _send(stdout: Any, reply: dict[str, Any]) -> None:
    blob = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    stdout.write(_LEN.pack(len(blob)) + blob)
    stdout.flush()


if __name__ == "__main__":
    main()
