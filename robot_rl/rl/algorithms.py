"""The learners ``robot-rl train`` / ``finetune`` know, by name: one registry line each.

A learner is one file with an ``Agent`` (``agent.py``) and a builder here. ``train`` builds agents through
``make_agent``, checkpoints record the name, ``finetune`` refuses names whose entry is not ``online``, and the
CLI lists ``ALGORITHMS`` as the choices of ``--algo``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_rl.nn.networks import GaussianActor, TanhGaussianActor
from robot_rl.rl.agent import Agent
from robot_rl.rl.bc import BC
from robot_rl.rl.calql import CalQL
from robot_rl.rl.image_iql import EncoderConfig, ImageBC, ImageIQL
from robot_rl.rl.iql import IQL, IQLConfig
from robot_rl.rl.rlpd import RLPD


@dataclass(frozen=True)
class Algorithm:
    """How to build one learner from the run's settings."""

    summary: str
    """One line for ``--help``."""
    state: Callable[[int, int, Any], Agent]
    """``(obs_dim, act_dim, config) -> agent`` on state observations; ``config`` is the run's ``section``."""
    image: Callable[[int, int, int, IQLConfig, EncoderConfig, bool], Agent] | None = None
    """``(state_dim, act_dim, image_size, config, encoder, use_state) -> agent`` on images (None: states only)."""
    online: bool = False
    """``finetune`` can continue it online (it has a critic to fine-tune)."""
    offline_ratio: float = 0.75
    """Fraction of each fine-tuning batch drawn from the offline data unless ``--offline-ratio`` says otherwise."""
    section: str = "iql"
    """The ``TrainConfig`` field holding its hyperparameters (``--set <section>.<field>=...``)."""
    actor: type[GaussianActor] = GaussianActor
    """Class of its ``actor`` (``Policy`` rebuilds it from checkpoints)."""
    needs_mc_return: bool = False
    """Its batches carry ``mc_return``: the offline rows' discounted return-to-go (``calql.mc_returns``), computed
    once at load time; online rows get ``calql.NO_MC_RETURN``."""


ALGORITHMS: dict[str, Algorithm] = {
    "iql": Algorithm("Implicit Q-Learning (expectile value, advantage-weighted actor)", IQL, ImageIQL, online=True),
    "bc": Algorithm("behaviour cloning baseline (the same Gaussian actor, every weight 1)", BC, ImageBC),
    "rlpd": Algorithm("RLPD: SAC with a LayerNorm critic ensemble, random-subset targets, several critic steps per "
                      "update", RLPD, online=True, offline_ratio=0.5, section="rlpd", actor=TanhGaussianActor),
    "calql": Algorithm("Cal-QL: CQL (SAC, twin critics, conservative logsumexp term) calibrated by Monte-Carlo "
                       "returns, offline pretraining that fine-tunes", CalQL, online=True, offline_ratio=0.5,
                       section="calql", actor=TanhGaussianActor, needs_mc_return=True),
}


def algorithm(name: str) -> Algorithm:
    """The registry entry of ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algo '{name}'; choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def make_agent(name: str, obs_dim: int, act_dim: int, config: Any, image_size: int | None = None,
               encoder: EncoderConfig | None = None, use_state: bool = True) -> Agent:
    """Build learner ``name`` for states (``image_size`` None) or images of ``image_size`` pixels."""
    entry = algorithm(name)
    if image_size is None:
        return entry.state(obs_dim, act_dim, config)
    if entry.image is None:
        raise ValueError(f"algo '{name}' learns from state observations only")
    return entry.image(obs_dim, act_dim, image_size, config, encoder or EncoderConfig(), use_state)
