"""Where a trained IQL run's actor puts its weight: the advantage weights exp(beta * (Q - V)) of every offline row,
by the behaviour that collected the row, and how well they pick out the scripted expert's action.

IQL's actor imitates the dataset weighted by advantage. When the critic cannot tell a good action from a bad one,
the weights are noise and IQL ends near behaviour cloning on the whole mix. For each run this prints, per behaviour
(the dataset's ``behaviour`` episode attribute) and per region (fingertip within / beyond ``--near`` m of the
object): rows, mean advantage, share of rows and share of weight; then the correlation of the advantage with the
cosine between the stored action and the task's scripted expert's action at that state, and that cosine's mean
with and without the weights. A critic that helps gives the expert more weight than rows and a clearly positive
correlation.

    JAX_PLATFORMS=cpu python benchmarks/iql_weights.py runs/push/iql_t10 runs/push/iql_t10s60

Reads the run's checkpoint and its dataset; CPU, a few seconds per run. Results in benchmarks/reward_quality.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def weights_report(run: Path, near: float) -> None:
    from robot_rl.data import Dataset
    from robot_rl.envs import task_expert
    from robot_rl.nn.checkpoint import load_checkpoint
    from robot_rl.rl.finetune import load_iql_for_finetuning

    payload, _ = load_checkpoint(run)
    if payload["algo"] != "iql":
        raise SystemExit(f"{run}: an IQL run is needed (its critics give the weights); this one is {payload['algo']}")
    with Dataset(payload["config"]["dataset"]) as ds:
        spec = ds.spec
        behaviour = np.array([str(ds.episode_attrs(n).get("behaviour", "?")) for n in ds.episode_names])
    loaded = load_iql_for_finetuning(run, spec, 1)
    off, agent = loaded.offline, loaded.agent
    assert off.episode_index is not None
    obs = torch.as_tensor(off.arrays["obs"], device=loaded.device)
    actions = torch.as_tensor(off.arrays["actions"], device=loaded.device)
    with torch.no_grad():
        adv = (agent.target_critic(obs, actions).min(0).values - agent.value(obs)).cpu().numpy()
    iql = loaded.train_cfg.iql
    w = np.minimum(np.exp(iql.temperature * adv), iql.weight_clip)
    state = off.arrays["obs"] * np.asarray(loaded.normalizer.std) + np.asarray(loaded.normalizer.mean)
    try:
        dist = np.linalg.norm(state[:, spec.state_slice("hand_pos")] - state[:, spec.state_slice("obj_pos")], axis=1)
        expert = task_expert(spec.name)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"{run}: {str(e).strip(chr(39))}") from None
    rows = behaviour[off.episode_index]
    ea = np.stack([np.asarray(expert(s.astype(np.float32)), np.float32) for s in state])
    da = off.arrays["actions"]
    cos = (ea * da).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(da, axis=1) + 1e-6)
    print(f"\n{run}  ({spec.name}, temperature {iql.temperature}, expectile {iql.expectile}, "
          f"{len(adv)} rows, advantage std {adv.std():.2f})")
    print("| region | behaviour | rows | mean adv. | share of rows | share of weight |")
    print("| --- | --- | --- | --- | --- | --- |")
    regions = [(f"fingertip < {near} m from the object", dist < near), (f">= {near} m", dist >= near)]
    for name, m in regions:
        for b in np.unique(rows):
            mm = m & (rows == b)
            if mm.any():
                print(f"| {name} | {b} | {mm.sum()} | {adv[mm].mean():+.2f} | {mm.sum() / m.sum():.2f} | "
                      f"{w[mm].sum() / w[m].sum():.2f} |")
    print("\n| region | corr(adv, cos to expert action) | mean cos, unweighted | mean cos, weighted |")
    print("| --- | --- | --- | --- |")
    for name, m in regions:
        print(f"| {name} | {np.corrcoef(adv[m], cos[m])[0, 1]:.2f} | {cos[m].mean():.2f} | "
              f"{(w[m] * cos[m]).sum() / w[m].sum():.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="IQL run folders (robot-rl train --algo iql)")
    p.add_argument("--near", type=float, default=0.06, help="metres: the fingertip-to-object split")
    args = p.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        weights_report(run, args.near)


if __name__ == "__main__":
    main()
