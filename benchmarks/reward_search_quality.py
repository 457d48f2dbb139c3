"""Reward search quality where a weak reward fails: `robot-rl reward-search` on a `suboptimal` MetaWorld dataset,
each candidate's success by iteration, the best one's 5-seed re-evaluation against IQL on the simulator's own reward,
and whether `robot-rl compare-rewards` distances rank the candidates as their success does.

    MUJOCO_GL=egl python benchmarks/reward_search_quality.py --out /tmp/rsq          # ~25 min on 2 loaded cores
    MUJOCO_GL=egl python benchmarks/reward_search_quality.py --out /tmp/rsq-smoke --smoke

The LLM is the project's OpenAI-compatible replay server (tests/llm/replay_server.py) on 127.0.0.1: it answers each
request with one of the hand-written replies in benchmarks/reward_search_replies/ (stand-ins for LLM replies, of
deliberately varied quality and in the styles real LLMs write; chosen by the iteration and sample index in the
request's seed). Everything else is the product, unchanged: `robot-rl reward-search` (collection of the offline
`suboptimal` dataset, extraction, normalization, gate, sandbox, relabeling, IQL per candidate, selection,
regeneration of rejected samples, `--final-seeds` re-evaluation), then `train_iql` on the dataset's ground-truth
rewards (the same trainer, budget and evaluation layouts) on other seeds, then `robot-rl relabel --source code:...`
of every trained candidate into a copy of the dataset and `robot-rl compare-rewards --reference ground_truth`.
Results: a table on stdout and OUT/summary.json; the numbers go to benchmarks/reward_search_quality.md by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REPLIES = Path(__file__).resolve().parent / "reward_search_replies"
SEED_STRIDE = 1009
"""``generate``: a sample's request seed is ``seed * 10007 + iteration * 1009 + index`` (search seed 0 here)."""


def reply_for(iteration: int, index: int) -> str:
    """The stand-in reply for sample ``index`` of ``iteration`` (``i<iteration>_<index>_*.md``)."""
    found = sorted(REPLIES.glob(f"i{iteration}_{index}_*.md"))
    if not found:  # no reply written for it: prose without code (the gate rejects it, the search goes on)
        return f"(no stand-in reply for iteration {iteration}, sample {index})"
    return found[0].read_text()


def _baseline_run(task: str, dataset: str, budget: Any) -> dict[str, Any]:
    """IQL on ``dataset``'s ground-truth rewards, in a fresh process (one torch thread, as the search's workers)."""
    import torch

    from robot_rl.data import GROUND_TRUTH, Dataset
    from robot_rl.envs import make_env
    from robot_rl.rewards.codegen.train import train_iql

    torch.set_num_threads(budget.threads)
    start = time.monotonic()
    env = make_env(task)
    spec = env.spec
    env.close()
    with Dataset(dataset) as ds:
        t = ds.transitions(reward_key=GROUND_TRUTH)
    result = train_iql(task, spec, t, budget)
    return {"seed": budget.seed, **result, "seconds": time.monotonic() - start}


def run_baseline(task: str, dataset: str, budget: Any, seeds: list[int], workers: int) -> list[dict[str, Any]]:
    import dataclasses

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_baseline_run, task, dataset, dataclasses.replace(budget, seed=s)) for s in seeds]
        return [f.result() for f in futures]


def distances(out: Path, dataset: Path, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Each trained candidate's code relabels a copy of the dataset (``robot-rl relabel``); ``robot-rl
    compare-rewards`` then gives every label's distance to the simulator's reward."""
    from robot_rl.cli.main import main

    copy = out / "distances.h5"
    shutil.copyfile(dataset, copy)
    codes = out / "codes"
    codes.mkdir(exist_ok=True)
    for c in candidates:
        path = codes / f"{c['id']}.py"
        path.write_text(c["code"])
        if main(["relabel", str(copy), "--source", f"code:{path}", "--id", c["id"]]) != 0:
            raise SystemExit(f"relabel with {path} failed")
    if main(["compare-rewards", str(copy), "--reference", "ground_truth", "--out", str(out)]) != 0:
        raise SystemExit("compare-rewards failed")
    report = json.loads((out / "distances.reward_distances.json").read_text())
    return {name: d for name, d in report["ranking"]}


def agreement(success: dict[str, float], distance: dict[str, float]) -> dict[str, Any]:
    """Spearman and Kendall rank correlation of -distance (nearer the truth: better) with success."""
    import math

    from scipy.stats import kendalltau, spearmanr

    names = [n for n in success if n in distance and math.isfinite(distance[n])]
    x = [-distance[n] for n in names]
    y = [success[n] for n in names]
    rho, rho_p = spearmanr(x, y)
    tau, tau_p = kendalltau(x, y)
    return {"candidates": names, "spearman": float(rho), "spearman_p": float(rho_p), "kendall": float(tau),
            "kendall_p": float(tau_p)}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def main() -> None:
    from robot_rl.cli.main import main as cli
    from robot_rl.rewards.codegen.train import TrainBudget
    from tests.llm.replay_server import MODEL, ReplayServer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/reward-search-quality"))
    p.add_argument("--task", default="metaworld/sweep-into-v3")
    p.add_argument("--iql-steps", type=int, default=3000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--collect-episodes", type=int, default=40)
    p.add_argument("--final-seeds", type=int, default=5)
    p.add_argument("--baseline-seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny budgets: checks that the script runs, measures nothing")
    args = p.parse_args()
    if args.smoke:
        args.iql_steps, args.eval_episodes, args.collect_episodes = 20, 2, 8
        args.final_seeds, args.baseline_seeds = 2, 1
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: pick a new --out")
    args.out.mkdir(parents=True)
    search_out = args.out / "search"
    times: dict[str, float] = {}

    def answer(request: Any) -> str:  # a RecordedRequest
        seed = int(request.body["seed"])
        return reply_for(seed // SEED_STRIDE, seed % SEED_STRIDE)

    argv = ["reward-search", "--task", args.task, "--iterations", "2", "--samples", "4",
            "--out", str(search_out), "--workers", str(args.workers), "--iql-steps", str(args.iql_steps),
            "--eval-episodes", str(args.eval_episodes), "--collect-episodes", str(args.collect_episodes),
            "--final-seeds", str(args.final_seeds), "--seed", "0"]
    start = time.monotonic()
    with ReplayServer(responder=answer) as server:
        argv += ["--llm-url", server.base_url, "--model", MODEL]
        print("robot-rl " + " ".join(argv), flush=True)
        rc = cli(argv)
    times["search"] = time.monotonic() - start
    if rc != 0:
        raise SystemExit(f"reward-search exited {rc}")
    lines = [json.loads(x) for x in (search_out / "candidates.jsonl").read_text().splitlines() if x.strip()]
    candidates = [r for r in lines if r.get("kind") == "candidate"]
    best_info = json.loads((search_out / "best_reward.json").read_text())
    final = best_info.get("final_evaluation") or {}
    dataset = next(search_out.glob("offline-*.h5"))

    start = time.monotonic()
    budget = TrainBudget(iql_steps=args.iql_steps, eval_episodes=args.eval_episodes)
    baseline = run_baseline(args.task, str(dataset), budget, list(range(1, args.baseline_seeds + 1)), args.workers)
    times["baseline"] = time.monotonic() - start

    start = time.monotonic()
    trained = [c for c in candidates if c.get("status") == "ok"]
    dist = distances(args.out, dataset, trained)
    times["distances"] = time.monotonic() - start
    success = {c["id"]: float(c["success_rate"]) for c in trained if c.get("success_rate") is not None}
    agree = agreement(success, dist)

    import numpy as np

    rates = [float(b["success_rate"]) for b in baseline if b.get("success_rate") is not None]
    summary = {"task": args.task, "dataset": str(dataset), "iql_steps": args.iql_steps,
               "eval_episodes": args.eval_episodes, "argv": argv, "times_s": times,
               "candidates": [{k: c.get(k) for k in ("id", "iteration", "status", "success_rate", "eval_return",
                                                    "seconds", "reason")} | {"distance": dist.get(c["id"])}
                              for c in candidates],
               "best_by_iteration": [r["best"] for r in lines if r.get("kind") == "iteration"],
               "best": best_info["id"], "final": final, "baseline": baseline,
               "baseline_mean": float(np.mean(rates)) if rates else None,
               "baseline_std": float(np.std(rates)) if rates else None, "agreement": agree}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    print(f"\n{args.task}, {args.iql_steps} IQL updates, {args.eval_episodes} eval episodes per run")
    print(f"{'candidate':<8} {'iter':>4}  {'status':<8} {'success':>7} {'dist':>6}  what")
    for c in candidates:
        d = dist.get(c["id"])
        file = sorted(REPLIES.glob(f"i{c['iteration']}_{c['index']}_*.md"))
        what = file[0].stem.split("_", 2)[2] if file else "?"
        print(f"{c['id']:<8} {c['iteration']:>4}  {c['status']:<8} {_pct(c.get('success_rate')):>7} "
              f"{'-' if d is None else f'{d:.3f}':>6}  {what}"
              + ("" if c["status"] == "ok" else f": {str(c.get('reason'))[:90]}"))
    by_id = {c["id"]: c for c in candidates}
    for it_line in (r for r in lines if r.get("kind") == "iteration"):  # the search's own pick after each
        best = by_id.get(it_line["best"])
        print(f"best after iteration {it_line['iteration']}: "
              + (f"{best['id']} {_pct(best.get('success_rate'))}" if best else "-"))
    if final.get("success_rates"):
        print(f"best {final['best']} on seeds {final['seeds']}: {final['success_mean']:.0%} ± "
              f"{final['success_std']:.0%} ({', '.join(_pct(x) for x in final['success_rates'])}); correlation "
              f"with the simulator's reward {final.get('truth_correlation', float('nan')):.2f} per step, "
              f"{final.get('truth_return_correlation', float('nan')):.2f} of returns")
    print(f"true-reward IQL on seeds {[b['seed'] for b in baseline]}: {summary['baseline_mean']:.0%} ± "
          f"{summary['baseline_std']:.0%} ({', '.join(_pct(b.get('success_rate')) for b in baseline)})")
    print(f"distance ranking vs success ranking over {len(agree['candidates'])} candidates: Spearman "
          f"{agree['spearman']:.2f} (p {agree['spearman_p']:.2f}), Kendall {agree['kendall']:.2f} "
          f"(p {agree['kendall_p']:.2f})")
    print("times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


if __name__ == "__main__":
    main()
