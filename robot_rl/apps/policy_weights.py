"""Policy weights on the wire: what ``robot-rl learner`` pushes and ``robot-rl actor`` runs.

A message is ``torch.save`` of a dict of tensors and plain values only (read back with ``weights_only=True``: no
pickled code runs on the robot PC): ``version``, ``updates``, and what ``robot_rl.rl.policy.policy_from_payload``
needs (``algo``, ``config``, ``env_spec``, ``normalizer``, ``agent`` = the actor's parameters only, CPU float32).
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch

from robot_rl.rl.agent import Agent
from robot_rl.rl.policy import Policy, policy_from_payload


def encode_weights(agent: Agent, base: dict[str, Any], version: int, updates: int) -> bytes:
    """The actor of ``agent`` with the policy fields of ``base``: ``algo`` and ``config`` of the learner that trains
    ``agent`` (not of the checkpoint it started from: RLPD from IQL has another actor), ``env_spec``, ``normalizer``."""
    actor = {f"actor.{k}": v.detach().to("cpu", torch.float32).clone() for k, v in agent.actor.state_dict().items()}
    plain = json.loads(json.dumps({"config": base["config"], "normalizer": base["normalizer"]}, default=_plain))
    payload = {"version": int(version), "updates": int(updates), "algo": str(base["algo"]),
               "env_spec": str(base["env_spec"]), **plain, "agent": actor}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, paths: as JSON values (``weights_only`` loading allows plain types only)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def decode_weights(data: bytes) -> tuple[int, int, Policy]:
    """``(version, updates, policy on the CPU)``; one-line ``ValueError`` if ``data`` is not such a message."""
    try:
        payload = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        return int(payload["version"]), int(payload["updates"]), policy_from_payload(payload, "cpu")
    except Exception as e:  # a torn or foreign message must not stop the actor: it keeps the weights it has
        raise ValueError(f"weights message unreadable ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
