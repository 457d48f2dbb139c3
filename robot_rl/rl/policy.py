"""A trained policy as robots and evaluators use it: normalizer (+ image encoder) + actor, loaded from a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robot_rl.core import EnvSpec
from robot_rl.nn.checkpoint import load_checkpoint
from robot_rl.nn.networks import GaussianActor
from robot_rl.nn.normalize import ObsNormalizer
from robot_rl.rl.algorithms import algorithm
from robot_rl.rl.image_iql import EncoderConfig, ObsEncoder


class Policy:
    """``obs {"state": [N, D]} -> action [N, A]`` in [-1, 1], on the device the policy lives on.

    With an ``encoder`` (image policies), ``obs`` also needs ``"image/<camera>"`` uint8 ``[N, S, S, 3]``
    (``S = encoder.image_size``; make the env with ``cameras=(policy.camera,)`` and ``image_size=(S, S)``).
    """

    def __init__(self, actor: GaussianActor, normalizer: ObsNormalizer, spec: EnvSpec,
                 encoder: ObsEncoder | None = None, camera: str | None = None):
        if (encoder is None) != (camera is None):
            raise ValueError("an image policy needs both an encoder and a camera; a state policy neither")
        self.actor = actor.eval()
        self.normalizer = normalizer
        self.spec = spec
        self.encoder = encoder.eval() if encoder is not None else None
        self.camera = camera
        """Camera of the image observation (``None``: a state policy)."""

    @property
    def image_size(self) -> int | None:
        """Square image size in pixels the policy expects (``None``: a state policy)."""
        return self.encoder.image_size if self.encoder is not None else None

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    @torch.no_grad()
    def __call__(self, obs: dict[str, torch.Tensor], deterministic: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        features = self.normalizer(obs["state"].to(self.device, torch.float32))
        if self.encoder is not None:
            key, size = f"image/{self.camera}", self.encoder.image_size
            image = obs.get(key)
            if image is None or image.shape[-3:] != (size, size, 3):
                got = "none" if image is None else list(image.shape)
                raise ValueError(f"this policy needs obs['{key}'] uint8 [N, {size}, {size}, 3], got {got}")
            features = self.encoder(image.to(self.device), features)
        return self.actor.act(features, deterministic, generator)

    def check_spec(self, spec: EnvSpec) -> None:
        """Raise ``ValueError`` saying what differs if this policy cannot drive an env with ``spec``."""
        require_fit(self.spec, spec)


def policy_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu") -> Policy:
    spec = EnvSpec.from_json(payload["env_spec"])
    config = payload["config"]
    entry = algorithm(payload.get("algo", "iql"))
    section = config.get(entry.section) or {}  # the learner's hyperparameters: its actor's layout
    hidden, dropout = tuple(section.get("hidden", (256, 256))), float(section.get("actor_dropout", 0.0))
    obs_type = config.get("obs", "state")
    encoder = None
    if obs_type != "state":
        encoder = ObsEncoder(config["image_size"], spec.state_dim, EncoderConfig(**config.get("encoder", {})),
                             use_state=obs_type == "image")
        encoder.load_state_dict(_sub_state(payload["agent"], "encoder."))
        encoder.to(device)
    actor = entry.actor(encoder.out_dim if encoder else spec.state_dim, spec.action.dim, hidden, dropout)
    actor.load_state_dict(_sub_state(payload["agent"], "actor."))
    norm = ObsNormalizer(**payload["normalizer"])
    return Policy(actor.to(device), norm, spec, encoder, config.get("camera") if encoder else None)


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def require_fit(trained: EnvSpec, target: EnvSpec) -> None:
    """Raise ``ValueError`` naming what differs if a checkpoint trained on ``trained`` cannot run on ``target``."""
    problems = trained.compatible_with(target)
    if problems:
        raise ValueError(f"checkpoint trained on '{trained.name}' does not fit '{target.name}': " + "; ".join(problems))


def load_policy(run_dir: Path, device: str | torch.device = "cpu") -> Policy:
    """The newest readable checkpoint's policy (falls back past a corrupt newest checkpoint with a warning)."""
    payload, _ = load_checkpoint(run_dir, map_location=device)
    return policy_from_payload(payload, device)

