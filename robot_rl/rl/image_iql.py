"""IQL and BC on image observations (DrQ style): one conv encoder shared by the critics, the value and the actor.

The encoder is trained by the critic and value losses; the actor sees detached features; the target critic
reads a Polyak-averaged copy of the encoder. In training mode, obs and next-obs images get random-shift
augmentation on the device (fresh shifts for each); acting (``Policy``) never augments. The losses are IQL's
own (``iql_losses``), fed encoder features instead of states.

Batches carry ``image`` / ``next_image`` uint8 ``[B, H, W, 3]`` next to IQL's keys; ``obs`` / ``next_obs`` are
the normalized states ``[B, D]``, appended to the image features unless the encoder is image-only.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn

from robot_rl.core.config_check import bounded, check_fields
from robot_rl.nn.networks import ConvEncoder, Critic, GaussianActor, ValueNet, random_shift
from robot_rl.rl.agent import gradient_step
from robot_rl.rl.iql import IQLConfig, actor_lr_factor, iql_losses, iql_scheduler


@dataclass(frozen=True)
class EncoderConfig:
    """The image encoder (DrQ's defaults)."""

    feature_dim: int = bounded(50, ge=1)
    """Image features after the encoder's linear + LayerNorm + tanh head."""
    channels: int = bounded(32, ge=1)
    """Channels of each of the four 3x3 conv layers."""
    shift_pad: int = bounded(4, ge=0)
    """Random-shift augmentation: pad (pixels, replicated edge) before cropping back at a random offset; 0: off."""

    def __post_init__(self) -> None:
        check_fields(self)


class ObsEncoder(nn.Module):
    """``(image uint8 [B, H, W, 3], state [B, D]) -> features [B, out_dim]``: conv features of the image, then
    the (normalized) state appended when ``use_state`` (``out_dim = feature_dim + D``, else ``feature_dim``)."""

    def __init__(self, image_size: int, state_dim: int, config: EncoderConfig, use_state: bool = True):
        super().__init__()
        self.conv = ConvEncoder(image_size, config.feature_dim, config.channels)
        self.image_size = image_size
        self.use_state = use_state
        self.out_dim = config.feature_dim + (state_dim if use_state else 0)

    def forward(self, image: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        features = self.conv(image)
        return torch.cat([features, state], dim=-1) if self.use_state else features


def _shift(module: nn.Module, images: torch.Tensor, pad: int) -> torch.Tensor:
    """``random_shift`` in training mode, the images themselves in eval mode."""
    return random_shift(images, pad) if module.training and pad > 0 else images


class _ImageAgent(nn.Module):
    """What every image agent starts from: its config, its encoder config and the shared encoder."""

    config: IQLConfig
    encoder_config: EncoderConfig
    encoder: ObsEncoder

    def _set_up_encoder(self, state_dim: int, image_size: int, config: IQLConfig | None,
                        encoder: EncoderConfig | None, use_state: bool) -> IQLConfig:
        self.config = config or IQLConfig()
        self.encoder_config = encoder or EncoderConfig()
        self.encoder = ObsEncoder(image_size, state_dim, self.encoder_config, use_state)
        return self.config


class ImageIQL(_ImageAgent):
    """IQL on ``image`` (+ ``obs`` state) batches through a shared ``ObsEncoder``; the same ``update``,
    ``optimizer`` and ``scheduler`` as ``IQL``. The encoder trains at the critic's learning rate."""

    def __init__(self, state_dim: int, act_dim: int, image_size: int, config: IQLConfig | None = None,
                 encoder: EncoderConfig | None = None, use_state: bool = True):
        super().__init__()
        config = self._set_up_encoder(state_dim, image_size, config, encoder, use_state)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        features = self.encoder.out_dim
        self.critic = Critic(features, act_dim, config.hidden, config.critics)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNet(features, config.hidden)
        self.actor = GaussianActor(features, act_dim, config.hidden, config.actor_dropout)
        self.optimizer = torch.optim.Adam([
            {"params": [*self.critic.parameters(), *self.encoder.parameters()], "lr": config.critic_lr},
            {"params": self.value.parameters(), "lr": config.value_lr},
            {"params": self.actor.parameters(), "lr": config.actor_lr},
        ], fused=True)
        self.scheduler = iql_scheduler(self.optimizer, config)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """IQL's losses on encoder features; the encoder gets gradients from the value and critic losses only."""
        pad = self.encoder_config.shift_pad
        image, next_image = _shift(self, batch["image"], pad), _shift(self, batch["next_image"], pad)
        obs = self.encoder(image, batch["obs"])
        with torch.no_grad():
            target_obs = self.target_encoder(image, batch["obs"])
            next_obs = self.encoder(next_image, batch["next_obs"])
        return iql_losses(self, {**batch, "obs": obs, "next_obs": next_obs}, target_obs=target_obs,
                          actor_obs=obs.detach())

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on all three losses, then the Polyak update of the target critic and target encoder.
        Returns detached 0-dim metrics on the training device."""
        return gradient_step(self, self.losses(batch))

    def polyak_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.target_critic, self.critic), (self.target_encoder, self.encoder)]


class ImageBC(_ImageAgent):
    """Behaviour cloning on ``image`` (+ ``obs`` state) batches: encoder and actor trained by the likelihood."""

    def __init__(self, state_dim: int, act_dim: int, image_size: int, config: IQLConfig | None = None,
                 encoder: EncoderConfig | None = None, use_state: bool = True):
        super().__init__()
        config = self._set_up_encoder(state_dim, image_size, config, encoder, use_state)
        self.actor = GaussianActor(self.encoder.out_dim, act_dim, config.hidden, config.actor_dropout)
        self.optimizer = torch.optim.Adam([*self.encoder.parameters(), *self.actor.parameters()],
                                          lr=config.actor_lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, functools.partial(actor_lr_factor, config))

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs = self.encoder(_shift(self, batch["image"], self.encoder_config.shift_pad), batch["obs"])
        return {"actor_loss": -self.actor.log_prob(obs, batch["actions"]).mean()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return gradient_step(self, self.losses(batch))

    def polyak_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []
