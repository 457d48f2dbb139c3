"""A tiny pure-torch point-mass env that implements SimEnv, with switches that break one rule each.

It exists to show that ``check_env`` catches each kind of contract violation.
"""

from __future__ import annotations

import torch

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec, StateSlice, StepResult, validate_action


class PointEnv:
    def __init__(self, num_envs: int = 2, episode_length: int = 5, **breaks: bool):
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.breaks = breaks
        self.spec = EnvSpec(
            name="toy/point-v0", observations={"state": ArraySpec((4,))},
            action=ActionSpec(2, "ee_delta", scale=(0.1, 0.1), offset=(0.0, 0.0)),
            state_slices=(StateSlice("hand_pos", 0, 2, "m"), StateSlice("goal_pos", 2, 4, "m")),
            max_episode_steps=episode_length, sim_state_dim=5, cameras=("top",),
        )
        self._rng = torch.Generator().manual_seed(0)
        self._state = torch.zeros(num_envs, 5, dtype=torch.float64)  # pos(2), goal(2), t

    def _obs(self) -> dict[str, torch.Tensor]:
        return {"state": self._state[:, :4].float()}

    def _new(self, rows: torch.Tensor) -> None:
        n = int(rows.sum())
        self._state[rows, :4] = torch.rand(n, 4, generator=self._rng, dtype=torch.float64)
        self._state[rows, 4] = 0

    def reset(self, seed=None):
        if seed is not None and not self.breaks.get("unseeded"):
            self._rng.manual_seed(seed)
        self._new(torch.ones(self.num_envs, dtype=torch.bool))
        return self._obs(), {"sim_state": self._state.clone()}

    def step(self, action):
        if self.breaks.get("accept_nan"):
            action, clipped = action.clamp(-1, 1), (action.abs() > 1).sum(1)
        else:
            action, clipped = validate_action(action, self.num_envs, 2)
        self._state[:, :2] += 0.1 * action.double()
        self._state[:, 4] += 1
        dist = (self._state[:, :2] - self._state[:, 2:4]).norm(dim=1)
        success = dist < 0.05
        truncated = self._state[:, 4] >= self.spec.max_episode_steps
        reward = (-dist).float()
        info = {"success": success, "action_clipped": clipped}
        if truncated.any():
            if not self.breaks.get("no_final_obs"):
                info["final_obs"] = self._obs()
                info["final_sim_state"] = self._state.clone()
            self._new(truncated)
        info["sim_state"] = self._state.clone()
        return StepResult(self._obs(), reward, torch.zeros_like(truncated), truncated, info)

    def get_sim_state(self):
        return self._state.clone()

    def set_sim_state(self, state):
        if not self.breaks.get("bad_restore"):
            self._state = state.clone()
        return self._obs()

    def render(self, sim_state, camera, width, height):
        img = torch.zeros(sim_state.shape[0], height, width, 3, dtype=torch.uint8)
        xs = (sim_state[:, 0].clamp(0, 1) * (width - 1)).long()
        img[torch.arange(len(xs)), :, xs] = 255
        return img

    def close(self):
        pass
