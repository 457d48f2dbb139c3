"""A trained policy as robots and evaluators use it: normalizer + actor, loaded from a run folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from robot_rl.core import EnvSpec
from robot_rl.rl.checkpoint import load_checkpoint
from robot_rl.rl.iql import IQLConfig
from robot_rl.rl.networks import GaussianActor
from robot_rl.rl.normalize import ObsNormalizer


class Policy:
    """``obs {"state": [N, D]} -> action [N, A]`` in [-1, 1], on the device the policy lives on."""

    def __init__(self, actor: GaussianActor, normalizer: ObsNormalizer, spec: EnvSpec):
        self.actor = actor.eval()
        self.normalizer = normalizer
        self.spec = spec

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    @torch.no_grad()
    def __call__(self, obs: dict[str, torch.Tensor], deterministic: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        state = obs["state"].to(self.device, torch.float32)
        return self.actor.act(self.normalizer(state), deterministic, generator)

    def check_spec(self, spec: EnvSpec) -> None:
        """Raise ``ValueError`` saying what differs if this policy cannot drive an env with ``spec``."""
        problems = self.spec.compatible_with(spec)
        if problems:
            raise ValueError(f"checkpoint trained on '{self.spec.name}' does not fit '{spec.name}': "
                             + "; ".join(problems))


def policy_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu") -> Policy:
    spec = EnvSpec.from_json(payload["env_spec"])
    cfg = IQLConfig(**{**payload["config"]["iql"], "hidden": tuple(payload["config"]["iql"]["hidden"])})
    actor = GaussianActor(spec.state_dim, spec.action.dim, cfg.hidden, cfg.actor_dropout)
    prefix = "actor."
    actor.load_state_dict({k[len(prefix):]: v for k, v in payload["agent"].items() if k.startswith(prefix)})
    norm = ObsNormalizer(**payload["normalizer"])
    return Policy(actor.to(device), norm, spec)


def load_policy(run_dir: Path, device: str | torch.device = "cpu") -> Policy:
    """The newest readable checkpoint's policy (falls back past a corrupt newest checkpoint with a warning)."""
    payload, _ = load_checkpoint(run_dir, map_location=device)
    return policy_from_payload(payload, device)


def normalizer_dict(n: ObsNormalizer) -> dict[str, Any]:
    return asdict(n)
