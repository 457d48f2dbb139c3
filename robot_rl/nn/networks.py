"""Networks for IQL, BC and RLPD: a batched critic ensemble (optionally LayerNorm'd), a value MLP, Gaussian and
tanh-Gaussian actors, an image encoder.

Shapes: B = batch, E = ensemble members, D = observation features, A = action dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """ReLU MLP ``[B, in_dim] -> [B, out_dim]``; dropout after each hidden activation when > 0."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: ``[E, B, in] -> [E, B, out]``."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine per member: ``[E, B, H] -> [E, B, H]``."""

    def __init__(self, members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:]), self.weight)


class EnsembleMLP(nn.Module):
    """E ReLU MLPs evaluated together. Input ``[B, in]`` (shared) or ``[E, B, in]``; output ``[E, B, out]``.

    ``layer_norm``: LayerNorm after each hidden linear layer, before the ReLU (RLPD's critic).
    """

    def __init__(self, members: int, in_dim: int, hidden: tuple[int, ...], out_dim: int, layer_norm: bool = False):
        super().__init__()
        self.members = members
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(EnsembleLayerNorm(members, h) for h in hidden) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                if self.norms is not None:
                    x = self.norms[i](x)
                x = F.relu(x)
        return x


class Critic(nn.Module):
    """Q ensemble: ``(obs [B, D], action [B, A]) -> Q [E, B]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], members: int = 2, layer_norm: bool = False):
        super().__init__()
        self.net = EnsembleMLP(members, obs_dim + act_dim, hidden, 1, layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class ValueNet(nn.Module):
    """``obs [B, D] -> V [B]``."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, dropout)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class GaussianActor(nn.Module):
    """Gaussian policy with a tanh-squashed mean and a state-independent log-std in [-5, 2].

    ``obs [B, D] -> (mean [B, A] in [-1, 1], std [A])``. Actions for the env are the mean (deterministic)
    or a sample clipped to [-1, 1].
    """

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, dropout)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tanh(self.net(obs))
        std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()
        return mean, std

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-density of ``action [B, A]`` under the policy at ``obs``: ``[B]``."""
        mean, std = self(obs)
        z = (action - mean) / std
        return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
            ) -> torch.Tensor:
        """``obs [N, D] -> action [N, A]`` in [-1, 1]: the mean, or a sample clipped to [-1, 1]."""
        mean, std = self(obs)
        if deterministic:
            return mean
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        return (mean + std * noise).clamp(-1.0, 1.0)


class TanhGaussianActor(GaussianActor):
    """SAC's tanh-squashed Gaussian: ``u ~ N(net(obs), std)``, ``action = tanh(u)``; std state-independent.

    Same parameters as ``GaussianActor`` (``net``, ``log_std``) and the same deterministic action ``tanh(net(obs))``,
    so an IQL or BC actor loads into it unchanged (its ``log_std``, learned in action space, becomes the pre-tanh one).
    """

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized sample ``action [B, A]`` in (-1, 1) and its log-density ``[B]`` (tanh-corrected)."""
        mu = self.net(obs)
        log_std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        noise = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        u = mu + log_std.exp() * noise
        # log N(u; mu, std) - sum log(1 - tanh(u)^2), the latter as 2 (log 2 - u - softplus(-2u)) for stability
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-density of ``action [B, A]`` (clamped inside (-1, 1)) under the squashed policy: ``[B]``."""
        a = action.clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        u = torch.atanh(a)
        std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()
        z = (u - self.net(obs)) / std
        return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi) - torch.log1p(-a.pow(2))).sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
            ) -> torch.Tensor:
        """``obs [N, D] -> action [N, A]``: ``tanh(mean)``, or ``tanh`` of a sample."""
        if deterministic:
            return torch.tanh(self.net(obs))
        return self.sample(obs, generator)[0]


class ConvEncoder(nn.Module):
    """DrQ-style encoder for uint8 images ``[B, H, W, 3] -> [B, feature_dim]`` (scaled to [0, 1] inside)."""

    def __init__(self, image_size: int, feature_dim: int = 50, channels: int = 32):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.conv(torch.zeros(1, 3, image_size, image_size)).shape[1]
        self.head = nn.Sequential(nn.Linear(n, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        return self.head(self.conv(x))


def random_shift(images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random-shift augmentation (DrQ): pad by replication and crop back at a random offset per image.

    ``images`` uint8 or float ``[B, H, W, C]`` -> same shape and dtype. Runs on the images' device, no host sync.
    """
    b, h, w, _ = images.shape
    x = F.pad(images.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), device=images.device, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=images.device, generator=generator)
    rows = (torch.arange(h, device=images.device).unsqueeze(0) + dy.unsqueeze(1))  # [B, H]
    cols = (torch.arange(w, device=images.device).unsqueeze(0) + dx.unsqueeze(1))  # [B, W]
    bidx = torch.arange(b, device=images.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.to(images.dtype)
