"""How long one reward-search iteration takes: K=4 drawer-open reward functions, default trainer and budget.

    MUJOCO_GL=egl python benchmarks/reward_search_speed.py [--samples 4] [--workers 2] [--out /tmp/rss]

The replay server (tests/llm/replay_server.py) plays the LLM on 127.0.0.1 and answers the K requests with four
plausible drawer-open rewards written for this benchmark. Prints the time to collect the offline dataset (once per
search), the wall time of the iteration (LLM + training + evaluation of every candidate), each candidate's own time
and ground-truth success; results go to benchmarks/reward_search_speed.md by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REWARDS = [
    # 1: negative distances, reach then pull
    '''def compute_reward(obs, action):
    reach = -torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1)
    pull = -5.0 * torch.linalg.vector_norm(obs["obj_pos"] - obs["goal_pos"], dim=-1)
    return reach + pull, {"reach": reach, "pull": pull}''',
    # 2: bounded tanh shaping
    '''def compute_reward(obs, action):
    reach = 1.0 - torch.tanh(10.0 * torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1))
    pull = 2.0 * (1.0 - torch.tanh(5.0 * torch.linalg.vector_norm(obs["obj_pos"] - obs["goal_pos"], dim=-1)))
    return reach + pull, {"reach": reach, "pull": pull}''',
    # 3: progress of the handle towards the goal this step, plus a small reach term
    '''def compute_reward(obs, action):
    before = torch.linalg.vector_norm(obs["prev_obj_pos"] - obs["goal_pos"], dim=-1)
    after = torch.linalg.vector_norm(obs["obj_pos"] - obs["goal_pos"], dim=-1)
    progress = 100.0 * (before - after)
    reach = -0.5 * torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1)
    effort = -0.01 * (action[:, :3] ** 2).sum(dim=-1)
    return progress + reach + effort, {"progress": progress, "reach": reach, "effort": effort}''',
    # 4: staged: reach, pull once at the handle, bonus at the goal (smooth gates: sigmoid of the margins)
    '''def compute_reward(obs, action):
    gap = torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1)
    to_goal = torch.linalg.vector_norm(obs["obj_pos"] - obs["goal_pos"], dim=-1)
    reach = torch.exp(-20.0 * gap)
    near = torch.sigmoid(200.0 * (0.05 - gap))
    pull = near * 3.0 * (1.0 - torch.tanh(10.0 * to_goal))
    bonus = 5.0 * torch.sigmoid(300.0 * (0.03 - to_goal))
    return reach + pull + bonus, {"reach": reach, "pull": pull, "bonus": bonus}''',
]


def main() -> None:
    from robot_rl.rewards.codegen.search import SearchConfig, offline_dataset, run_search
    from robot_rl.rewards.codegen.train import TrainBudget
    from tests.llm.replay_server import ReplayServer, fast_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("/tmp/reward-search-speed"))
    args = p.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: pick a new --out")

    def answer(request) -> str:  # noqa: ANN001 - a RecordedRequest
        i = int(request.body["seed"]) % 1009 % args.samples
        return f"```python\n{REWARDS[i % len(REWARDS)]}\n```"

    with ReplayServer(responder=answer) as server:
        cfg = SearchConfig(llm=fast_config(server, deadline_s=30.0), out=args.out, task="metaworld/drawer-open-v3",
                           iterations=1, samples=args.samples, budget=TrainBudget(), workers=args.workers)
        start = time.monotonic()
        args.out.mkdir(parents=True)
        data = offline_dataset(cfg, lambda kind, info: None)
        collected = time.monotonic() - start
        start = time.monotonic()
        result = run_search(cfg)
        iteration = time.monotonic() - start
    b = cfg.budget
    print(f"trainer {b.trainer}: {b.iql_steps} IQL updates, {b.eval_episodes} eval episodes, {cfg.workers} workers; "
          f"offline data {data}")
    print(f"collect {cfg.collect_episodes} suboptimal episodes (once per search): {collected:.1f} s")
    print(f"one iteration, K={args.samples}: {iteration:.1f} s wall")
    for r in result.records:
        success = "-" if r.get("success_rate") is None else f"{r['success_rate']:.0%}"
        print(f"  {r['id']}: {r['status']}, {r.get('seconds', 0):.1f} s, success {success}, "
              f"eval return {r.get('eval_return', float('nan')):.0f} {r.get('reason') or ''}")


if __name__ == "__main__":
    main()
