"""``robot-rl reward-search``: have an LLM write reward code (Eureka / Text2Reward loop), train a policy on each
candidate in the sim, keep the best; or rank candidates by agreement with preference labels on a dataset.

Writes OUT/candidates.jsonl (every candidate as it finishes), best_reward.py (for relabel --source code:FILE.py and
finetune --reward code:FILE.py), best_reward.json (provenance), report.md and success_by_iteration.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--task", default=None, help="sim task, e.g. metaworld/drawer-open-v3")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="model name as the server knows it")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--iterations", type=int, default=5, help="search iterations (default 5, as Eureka)")
    p.add_argument("--samples", type=int, default=4, help="K: reward functions per iteration (default 4)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/reward-search-TASK)")
    p.add_argument("--resume", action="store_true", help="continue the search in OUT after its last iteration")
    p.add_argument("--ray-address", default=None,
                   help="train candidates as Ray tasks on this cluster ('local': start a local Ray)")
    p.add_argument("--workers", type=int, default=2, help="candidates trained at once (default 2)")
    p.add_argument("--timeout", type=float, default=900.0, help="wall-clock seconds per candidate (default 900)")
    p.add_argument("--dataset", default=None, help="HDF5 dataset: offline data for iql, segments for --labels")
    p.add_argument("--labels", default=None, help="label store: rank by agreement with its preference labels")
    p.add_argument("--labeler", default=None, help="use only this labeler's labels (default: all)")
    p.add_argument("--reference", default=None,
                   help="a reward label of --dataset (e.g. a reward model trained on the preference labels): record "
                        "each candidate's EPIC/STARC-style distance to it (as robot-rl compare-rewards), a tie-breaker")
    p.add_argument("--select", choices=("auto", "success", "labels", "distance"), default="auto",
                   help="ranking: ground-truth success, label agreement, distance to --reference (nearest first), or "
                        "auto (labels when given, else distance with --trainer none, else success)")
    p.add_argument("--source-context", action="store_true",
                   help="also give the LLM the simulator's environment source (Eureka-style)")
    p.add_argument("--check-sandbox", action="store_true", help="print which sandbox layers are active, then exit")
    p.add_argument("--check-reply", type=Path, default=None, metavar="FILE",
                   help="run one LLM reply (markdown as the LLM returns it) through the search's path (extraction, "
                        "normalization, gate, sandbox on --dataset) and print 'accepted' with reward statistics, or "
                        "every reason (exit 2); then exit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--regenerate", type=int, default=1,
                   help="rounds per iteration asking again for samples without usable code (default 1, Eureka)")
    p.add_argument("--final-seeds", type=int, default=5,
                   help="train the best reward again on this many other seeds at the end (default 5, Eureka; 0: skip)")
    p.add_argument("--examples", type=int, default=2,
                   help="verified rewards of the closest other tasks shown in the prompt (default 2, Text2Reward)")
    p.add_argument("--library", default=None, metavar="DIR",
                   help="folder of finished searches whose best rewards join the few-shot examples")
    p.add_argument("--feedback", default=None, metavar="TEXT|FILE",
                   help="a person's critique of the rewards so far, added to the prompt (with --resume: of the best)")
    g = p.add_argument_group("training budget per candidate")
    g.add_argument("--trainer", choices=("iql", "ppo", "none"), default="iql",
                   help="iql: offline IQL on the dataset relabeled by the candidate (default); ppo: SB3 PPO in the "
                        "sim; none: label agreement only (no sim needed)")
    g.add_argument("--iql-steps", type=int, default=3000, help="IQL updates (default 3000)")
    g.add_argument("--ppo-steps", type=int, default=20_000, help="PPO env steps (default 20000)")
    g.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes (default 10)")
    g.add_argument("--collect-episodes", type=int, default=40,
                   help="episodes of the suboptimal dataset collected for iql without --dataset (default 40)")


def check_sandbox() -> str:
    """The sandbox's own report of the layers this machine gives (it runs one probe batch through a worker)."""
    from robot_rl.rewards.codegen.sandbox import format_layers, sandbox_layers

    return format_layers(sandbox_layers())


def _config(args: argparse.Namespace) -> Any:
    from robot_rl.llm import LLMConfig
    from robot_rl.rewards.codegen.search import SearchConfig
    from robot_rl.rewards.codegen.train import TrainBudget

    if not args.llm_url or not args.model:
        raise ValueError("reward-search needs --llm-url URL and --model NAME (an OpenAI-compatible server)")
    if args.task is None and args.trainer != "none":
        raise ValueError(f"--task is required with --trainer {args.trainer}")
    name = (args.task or Path(args.dataset or "dataset").stem).rsplit("/", 1)[-1]
    out = check_output(args.out or Path("runs") / f"reward-search-{name}", "--out", "folder")
    budget = TrainBudget(trainer=args.trainer, iql_steps=args.iql_steps, ppo_steps=args.ppo_steps,
                         eval_episodes=args.eval_episodes, seed=args.seed)
    llm = LLMConfig(model=args.model, base_url=args.llm_url, api_key_env=args.api_key_env,
                    cache_path=str(out / "llm-cache.sqlite"))
    return SearchConfig(llm=llm, out=out, task=args.task, iterations=args.iterations, samples=args.samples,
                        budget=budget, workers=args.workers, ray_address=args.ray_address, dataset=args.dataset,
                        labels=args.labels, labeler=args.labeler, select=args.select, reference=args.reference,
                        source_context=args.source_context, timeout_s=args.timeout, resume=args.resume,
                        seed=args.seed, collect_episodes=args.collect_episodes, regenerate=args.regenerate,
                        final_seeds=args.final_seeds, examples=args.examples, library=args.library,
                        critique=_text_or_file(args.feedback))


def _text_or_file(value: str | None) -> str | None:
    """``--feedback``: the text itself, or the contents of the file it names."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--feedback {value}: cannot read the file ({e})") from None
    return value


def _describe(record: dict[str, Any]) -> str:
    from rich.markup import escape

    from robot_rl.rewards.codegen.reflect import scores_text

    if record.get("status") == "ok":
        return f"{record['id']}: {scores_text(record)} ({record.get('seconds', 0):.0f} s)"
    return f"{record['id']}: [red]{record.get('status')}[/red]: {escape(str(record.get('reason')))}"


def check_reply(path: Path, dataset: str | None) -> int:
    """``--check-reply FILE --dataset D.h5``: 0 when accepted, 2 when rejected."""
    from robot_rl.rewards.codegen.check_reply import check_reply as check
    from robot_rl.rewards.codegen.check_reply import format_check

    if not dataset:
        raise ValueError("--check-reply needs --dataset FILE.h5 (the transitions the reward runs on)")
    if not path.is_file():
        raise ValueError(f"--check-reply {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"--check-reply {path}: not UTF-8 text (byte {e.start})") from None
    result = check(text, dataset)
    print(format_check(result, str(path), dataset))
    return 0 if result.accepted else 2


def run(args: argparse.Namespace) -> int:
    if args.check_sandbox:
        print(check_sandbox())
        return 0
    if args.check_reply is not None:
        return check_reply(args.check_reply, args.dataset)
    from robot_rl.rewards.codegen.search import run_search

    cfg = _config(args)
    if cfg.dataset is not None:
        from robot_rl.data import Dataset

        with Dataset(cfg.dataset):  # a missing or unreadable dataset: its one line before anything is printed
            pass
    console = Console(stderr=True)
    console.print(f"reward search: {cfg.task or cfg.dataset}, {cfg.iterations} iterations x {cfg.samples} samples, "
                  f"trainer {cfg.budget.trainer}, ranking by {cfg.ranking}"
                  + (f", Ray at {cfg.ray_address}" if cfg.ray_address else f", {cfg.workers} local workers"))
    start = time.time()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("candidates"),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as progress:
        bars: dict[str, Any] = {}

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "collect":
                if "collect" not in bars:
                    bars["collect"] = progress.add_task("collect offline data", total=data["total"], info="")
                progress.advance(bars["collect"])
            elif kind == "iteration":
                bars["it"] = progress.add_task(f"iteration {data['iteration'] + 1}/{data['iterations']}",
                                               total=data["samples"], info="asking the LLM")
            elif kind == "samples":
                progress.update(bars["it"], total=data["samples"],  # regenerated samples included
                                info=f"{data['usable']}/{data['samples']} usable replies, training")
            elif kind == "candidate":
                progress.advance(bars["it"])
                progress.console.print("  " + _describe(data))
            elif kind == "iteration_done":
                best = data["best"]
                progress.update(bars["it"], info=f"best so far {_describe(best)}" if best else "no score yet")
            elif kind == "final":
                bars["final"] = progress.add_task(f"final evaluation of {data['best']}", total=data["seeds"],
                                                  info="other seeds")
            elif kind == "final_run":
                progress.advance(bars["final"])
                progress.console.print(f"  seed {data['seed']}: " + _describe(data))

        result = run_search(cfg, on_event)
    best = result.best
    console.print(f"searched in {time.time() - start:.0f} s -> {cfg.out}/report.md")
    if best is None:
        console.print("no candidate got a score; see the reasons in the report")
        return 1
    if result.final is not None and result.final["success_rates"]:
        f = result.final
        console.print(f"final evaluation on {len(f['success_rates'])} more seeds: success {f['success_mean']:.0%} "
                      f"± {f['success_std']:.0%}" + (f"; correlation with the simulator's reward "
                                                     f"{f['truth_correlation']:.2f}" if "truth_correlation" in f
                                                     else ""))
    console.print(f"best: {_describe(best)}\n{cfg.out}/best_reward.py. Next: robot-rl relabel DATASET --source "
                  f"code:{cfg.out}/best_reward.py --activate")
    return 0
