"""``check_env(env)``: the conformance suite every ``RobotEnv`` backend passes (like gymnasium's env_checker)."""

from __future__ import annotations

from typing import Any

import torch

from robot_rl.core.env import Obs, RobotEnv, SimEnv, StepResult
from robot_rl.core.specs import EnvSpec


class EnvCheckError(AssertionError):
    """A backend breaks the ``RobotEnv`` contract; the message says which rule and where."""


def _fail(env: RobotEnv, msg: str) -> EnvCheckError:
    return EnvCheckError(f"{env.spec.name if hasattr(env, 'spec') else type(env).__name__}: {msg}")


def _check_obs(env: RobotEnv, obs: Obs, where: str) -> None:
    if not isinstance(obs, dict):
        raise _fail(env, f"{where}: obs must be a dict of tensors, got {type(obs).__name__}")
    if set(obs) != set(env.spec.observations):
        raise _fail(env, f"{where}: obs keys {sorted(obs)} != spec keys {sorted(env.spec.observations)}")
    for name, spec in env.spec.observations.items():
        try:
            spec.check(name, obs[name], env.num_envs)
        except ValueError as e:
            raise _fail(env, f"{where}: {e}") from None
        if obs[name].device != env.device:
            raise _fail(env, f"{where}: obs '{name}' on {obs[name].device}, env.device is {env.device}")
        if obs[name].is_floating_point() and not bool(torch.isfinite(obs[name]).all()):
            raise _fail(env, f"{where}: obs '{name}' has non-finite values")


def _check_vec(env: RobotEnv, value: Any, name: str, dtype: torch.dtype, where: str) -> None:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (env.num_envs,) or value.dtype != dtype:
        got = f"{type(value).__name__} {getattr(value, 'shape', '')} {getattr(value, 'dtype', '')}"
        raise _fail(env, f"{where}: {name} must be {dtype} [{env.num_envs}], got {got}")


def _check_step(env: RobotEnv, res: Any, where: str) -> StepResult:
    if not isinstance(res, StepResult):
        raise _fail(env, f"{where}: step must return a StepResult, got {type(res).__name__}")
    _check_obs(env, res.obs, where)
    _check_vec(env, res.reward, "reward", torch.float32, where)
    _check_vec(env, res.terminated, "terminated", torch.bool, where)
    _check_vec(env, res.truncated, "truncated", torch.bool, where)
    if "success" in res.info:
        _check_vec(env, res.info["success"], "info['success']", torch.bool, where)
    _check_vec(env, res.info.get("action_clipped"), "info['action_clipped']", torch.int64, where)
    if isinstance(env, SimEnv):
        _check_sim_state(env, res.info.get("sim_state"), where)
    return res


def _check_sim_state(env: RobotEnv, state: Any, where: str) -> None:
    want = (env.num_envs, env.spec.sim_state_dim)
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != want or state.dtype != torch.float64:
        raise _fail(env, f"{where}: info['sim_state'] must be float64 {list(want)}, "
                         f"got {getattr(state, 'dtype', type(state).__name__)} {list(getattr(state, 'shape', []))}")


def _random_action(env: RobotEnv, gen: torch.Generator) -> torch.Tensor:
    a = torch.rand(env.num_envs, env.spec.action.dim, generator=gen) * 2 - 1
    return a.to(env.device)


def check_env(env: RobotEnv, max_steps: int | None = None, check_render: bool = True) -> None:
    """Run the conformance suite; raise ``EnvCheckError`` on the first broken rule.

    ``max_steps`` bounds the wait for an autoreset (default: the spec's episode length + 1).
    Leaves the env in an arbitrary state; reset it afterwards.
    """
    _check_attributes(env)
    gen = torch.Generator().manual_seed(0)
    _check_reset(env)
    _check_actions(env, gen)
    if isinstance(env, SimEnv):
        _check_sim(env, gen, check_render)
    _check_autoreset(env, gen, max_steps)


def _check_attributes(env: RobotEnv) -> None:
    if not isinstance(env, RobotEnv):
        raise EnvCheckError(f"{type(env).__name__} does not implement RobotEnv (num_envs, device, spec, reset, step)")
    if not isinstance(env.spec, EnvSpec):
        raise _fail(env, f"spec must be an EnvSpec, got {type(env.spec).__name__}")
    if not isinstance(env.num_envs, int) or env.num_envs < 1:
        raise _fail(env, f"num_envs must be a positive int, got {env.num_envs!r}")
    if env.spec.action.dim < 1:
        raise _fail(env, "action dim must be >= 1")


def _check_reset(env: RobotEnv) -> None:
    """The same seed gives the same first observation."""
    obs0, info0 = env.reset(seed=123)
    _check_obs(env, obs0, "reset")
    if not isinstance(info0, dict):
        raise _fail(env, "reset: info must be a dict")
    obs0b, _ = env.reset(seed=123)
    for k in obs0:
        if not torch.equal(obs0[k], obs0b[k]):
            raise _fail(env, f"reset(seed=123) twice gave different obs '{k}': seeding is not deterministic")
    if isinstance(env, SimEnv):
        _check_sim_state(env, info0.get("sim_state"), "reset")


def _check_actions(env: RobotEnv, gen: torch.Generator) -> None:
    """A random step works; a NaN action raises naming the env; an out-of-range action is clipped and counted."""
    _check_step(env, env.step(_random_action(env, gen)), "step")
    bad = torch.zeros(env.num_envs, env.spec.action.dim, device=env.device)
    bad[env.num_envs - 1, 0] = float("nan")
    try:
        env.step(bad)
    except ValueError as e:
        if str(env.num_envs - 1) not in str(e):
            raise _fail(env, f"NaN action error does not name env {env.num_envs - 1}: {e}") from None
    else:
        raise _fail(env, "a NaN action did not raise ValueError")
    big = torch.full((env.num_envs, env.spec.action.dim), 5.0, device=env.device)
    res = _check_step(env, env.step(big), "step(out-of-range)")
    if not bool((res.info["action_clipped"] == env.spec.action.dim).all()):
        raise _fail(env, f"out-of-range action: info['action_clipped'] = {res.info['action_clipped'].tolist()}, "
                         f"expected {env.spec.action.dim} per env")


def _check_autoreset(env: RobotEnv, gen: torch.Generator, max_steps: int | None) -> None:
    """Run until some env finishes: the step's obs starts the new episode, final_obs ends the old one."""
    env.reset(seed=7)
    limit = max_steps if max_steps is not None else env.spec.max_episode_steps + 1
    for t in range(limit):
        res = _check_step(env, env.step(_random_action(env, gen)), f"step {t}")
        if bool((res.terminated | res.truncated).any()):
            if "final_obs" not in res.info:
                raise _fail(env, f"step {t}: an env finished but info has no 'final_obs'")
            _check_obs(env, res.info["final_obs"], f"step {t} final_obs")
            if isinstance(env, SimEnv):
                _check_sim_state(env, res.info.get("final_sim_state"), f"step {t} final_sim_state")
            return
        if t + 1 > env.spec.max_episode_steps:
            raise _fail(env, f"no episode ended within max_episode_steps={env.spec.max_episode_steps}")
    if max_steps is None:
        raise _fail(env, f"no episode ended within {limit} steps")


def _check_sim(env: SimEnv, gen: torch.Generator, check_render: bool) -> None:
    state = env.get_sim_state()
    _check_sim_state(env, state, "get_sim_state")
    action = _random_action(env, gen)
    a = env.step(action)
    env.set_sim_state(state)
    b = env.step(action)
    for k in a.obs:
        if not torch.allclose(a.obs[k].double(), b.obs[k].double(), atol=1e-6):
            raise _fail(env, f"set_sim_state then the same action gave a different obs '{k}': "
                             "restore is incomplete or stepping is not deterministic")
    if not torch.allclose(a.reward, b.reward, atol=1e-5, equal_nan=True):
        raise _fail(env, "set_sim_state then the same action gave a different reward")
    if not check_render or not env.spec.cameras:
        return
    before = env.get_sim_state()
    frames = env.render(state[:1].repeat(2, 1), env.spec.cameras[0], 32, 24)
    if tuple(frames.shape) != (2, 24, 32, 3) or frames.dtype != torch.uint8:
        raise _fail(env, f"render must return uint8 [2, 24, 32, 3], got {frames.dtype} {list(frames.shape)}")
    if not torch.equal(frames[0], frames[1]):
        raise _fail(env, "render of the same state twice gave different images")
    if not torch.equal(before, env.get_sim_state()):
        raise _fail(env, "render disturbed the live environment's state")
