"""``robot-rl pipeline``: unlabeled data plus a task sentence to a policy, end to end.

collect -> label pairs -> train the reward model -> relabel the dataset -> offline IQL -> online fine-tuning with
the learned reward -> evaluation; ``report.md`` in the output folder gathers the numbers and plots.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from robot_rl.cli.help_text import command_help
from robot_rl.cli.overrides import apply_overrides, load_yaml
from robot_rl.rewards.labelers import LABELERS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
STAGES = ("collect", "label", "train-reward", "relabel", "train", "finetune", "eval")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML (default: configs/quickstart.yaml)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the config's)")
    p.add_argument("--labeler", choices=tuple(LABELERS), default=None)
    p.add_argument("--vlm-url", default=None, help="OpenAI-compatible base URL of the VLM (with --labeler vlm)")
    p.add_argument("--model", default=None, help="VLM model name (with --labeler vlm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="delete the output folder first")


def run(args: argparse.Namespace) -> int:
    cfg = load_yaml(args.config or DEFAULT_CONFIG)
    if args.labeler:
        cfg = apply_overrides(cfg, [f"label.labeler={args.labeler}"])
    if args.vlm_url:
        cfg.setdefault("label", {}).setdefault("vlm", {})["url"] = args.vlm_url
    if args.model:
        cfg.setdefault("label", {}).setdefault("vlm", {})["model"] = args.model
    if args.labeler == "vlm" and "label.segment_length" not in {item.partition("=")[0] for item in args.set}:
        cfg.setdefault("label", {})["segment_length"] = 1  # single frames, as RL-VLM-F
    cfg = apply_overrides(cfg, args.set)
    out = Path(args.out or cfg.get("out", "runs/pipeline"))
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it, or --out DIR")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.yaml").write_text(_yaml(cfg))
    return Pipeline(cfg, out, Console(stderr=True)).run()


def _yaml(cfg: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)


class Pipeline:
    def __init__(self, cfg: dict[str, Any], out: Path, console: Console) -> None:
        self.cfg, self.out, self.console = cfg, out, console
        self.task = str(cfg.get("task", "metaworld/drawer-open-v3"))
        self.seed = int(cfg.get("seed", 0))
        self.dataset = out / f"{self.task.split('/')[-1]}.h5"
        self.times: dict[str, float] = {}
        self.facts: dict[str, Any] = {}

    def section(self, name: str) -> dict[str, Any]:
        value = self.cfg.get(name) or {}
        if not isinstance(value, dict):
            raise ValueError(f"pipeline config: '{name}' must be a mapping")
        return dict(value)

    def stage(self, name: str) -> None:
        self.console.rule(f"[bold]{name}")
        self._start = time.time()

    def done(self, name: str) -> None:
        self.times[name] = time.time() - self._start

    def run(self) -> int:
        from robot_rl.cli.main import main

        start = time.time()
        c = self.section("collect")
        self.stage("collect")
        self._call(main, ["collect", "--task", self.task, "--episodes", str(c.get("episodes", 60)),
                          "--preset", str(c.get("preset", "suboptimal")), "--num-envs", str(c.get("num_envs", 4)),
                          "--seed", str(self.seed), "--out", str(self.dataset)])
        self.done("collect")
        self.stage("label")
        self._label()
        self.done("label")
        self.stage("train-reward")
        self._train_reward()
        self.done("train-reward")
        self.stage("relabel")
        self._call(main, ["relabel", str(self.dataset), "--source", f"reward-model:{self.out / 'reward'}",
                          "--activate"])
        self.done("relabel")
        self.stage("train")
        self._train()
        self.done("train")
        self.stage("finetune")
        self._finetune()
        self.done("finetune")
        self.times["total"] = time.time() - start
        report = self._report()
        self.console.print(f"pipeline finished in {self.times['total'] / 60:.1f} min; report: {report}")
        return 0

    def _call(self, main: Any, argv: list[str]) -> None:
        code = main(argv)
        if code:
            raise RuntimeError(f"robot-rl {' '.join(argv[:1])} failed (exit status {code}); see the message above")

    def _label(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from robot_rl.rewards.jobs import label_dataset, make_labeler

        lab = self.section("label")
        kind = str(lab.get("labeler", "scripted"))
        vlm = dict(lab.get("vlm") or {})
        size = int(vlm.get("image_size", 224))
        frames_identity = None
        if kind == "vlm":
            from robot_rl.data import Dataset
            from robot_rl.rl.image_data import dataset_camera

            with Dataset(self.dataset) as ds:
                camera = dataset_camera(ds, vlm.get("camera"))
            frames_identity = {"camera": camera, "size": [size, size]}
        teacher = {"seed": self.seed, **dict(lab.get("teacher") or {})}
        labeler = make_labeler(kind, teacher=teacher, vlm_url=vlm.get("url"), model=vlm.get("model"),
                               api_key_env=str(vlm.get("api_key_env", "OPENAI_API_KEY")),
                               concurrency=int(vlm.get("concurrency", 4)), frames_identity=frames_identity,
                               cache_path=str(self.out / "labels.sqlite.llm-cache"))
        pairs = int(lab.get("pairs", 500))
        with Progress(TextColumn(f"[bold]label ({kind})"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console) as progress:
            bar = progress.add_task("label", total=pairs)
            job = label_dataset(str(self.dataset), labeler, pairs, int(lab.get("segment_length", 50)),
                                selection=str(lab.get("selection", "uniform")), seed=self.seed,
                                store=str(self.out / "labels.sqlite"), camera=vlm.get("camera"), image_size=size,
                                progress=lambda done, total, _label: progress.update(bar, completed=done))
        r = job.result
        self.facts["labels"] = {"labeler": kind, "pairs": len(r.labels), "cant_tell": r.cant_tell,
                                "accuracy_vs_ground_truth": job.accuracy, "decided": job.decided}
        acc = "n/a" if math.isnan(job.accuracy) else f"{job.accuracy:.1%}"
        self.console.print(f"{len(r.labels)} pairs labeled ({r.cant_tell} can't tell); agreement with ground "
                           f"truth {acc}")

    def _train_reward(self) -> None:
        from robot_rl.cli.train_reward_cmd import summary
        from robot_rl.rewards.jobs import train_reward
        from robot_rl.rewards.model import RewardModelConfig

        rm = self.section("reward_model")
        config = RewardModelConfig(**{"seed": self.seed, **rm})
        metrics = train_reward(str(self.dataset), self.out / "reward", store=str(self.out / "labels.sqlite"),
                               config=config)
        self.facts["reward_model"] = metrics
        self.console.print(summary(metrics))

    def _train(self) -> None:
        from robot_rl.cli.main import main

        tr = self.section("train")
        argv = ["train", "--dataset", str(self.dataset), "--out", str(self.out / "iql"), "--seed", str(self.seed),
                "--eval-episodes", str(self.section("eval").get("episodes", 20))]
        argv += [f"--set={k}={json.dumps(v)}" for k, v in tr.items()]
        self._call(main, argv)

    def _finetune(self) -> None:
        from robot_rl.cli.main import main

        ft = self.section("finetune")
        argv = ["finetune", "--checkpoint", str(self.out / "iql"), "--out", str(self.out / "finetune"),
                "--steps", str(ft.get("env_steps", 3000)), "--warmup", str(ft.get("warmup_env_steps", 500)),
                "--eval-every", str(ft.get("eval_every", 3000)), "--eval-episodes",
                str(self.section("eval").get("episodes", 20)), "--seed", str(self.seed), "--reward", "dataset"]
        for key, flag in (("offline_ratio", "--offline-ratio"), ("updates_per_env_step", "--updates-per-step"),
                          ("num_envs", "--num-envs")):
            if key in ft:
                argv += [flag, str(ft[key])]
        self._call(main, argv)

    def _report(self) -> Path:
        from robot_rl.rl.report import write_report

        def eval_of(run: str) -> dict[str, Any]:
            path = self.out / run / "eval.json"
            return json.loads(path.read_text()) if path.exists() else {}

        for run in ("iql", "finetune"):
            for img in ("curves.png", "episode.gif"):
                src = self.out / run / img
                if src.exists():
                    shutil.copy(src, self.out / f"{run}_{img}")
        if (self.out / "reward" / "reward_vs_truth.png").exists():
            shutil.copy(self.out / "reward" / "reward_vs_truth.png", self.out / "reward_vs_truth.png")
        rm = self.facts.get("reward_model", {})
        labels = self.facts.get("labels", {})
        corr = rm.get("correlation", {})
        offline, online = eval_of("iql"), eval_of("finetune")
        facts: dict[str, Any] = {
            "task": self.task, "dataset": str(self.dataset),
            "labeler": labels.get("labeler"), "pairs labeled": labels.get("pairs"),
            "can't tell": labels.get("cant_tell"),
            "label agreement with ground truth": labels.get("accuracy_vs_ground_truth"),
            "reward model held-out accuracy": rm.get("valid_accuracy"),
            "reward model agreement with ground truth (held-out pairs)": rm.get("valid_true_agreement"),
            "learned vs true reward correlation (mean over episodes)": corr.get("mean_episode"),
            "offline IQL (learned reward) success": offline.get("eval/success_rate"),
            "offline IQL return (true reward)": offline.get("eval/return_mean"),
            "after online fine-tuning (learned reward) success": online.get("eval/success_rate"),
            "after online fine-tuning return (true reward)": online.get("eval/return_mean"),
            **{f"time {k} (s)": round(v, 1) for k, v in self.times.items()},
        }
        (self.out / "summary.json").write_text(json.dumps(facts, indent=1, default=str))
        _summary_plot(facts, self.out / "pipeline.png")
        shown = {k: (f"{v:.0%}" if isinstance(v, float) and ("success" in k or "accuracy" in k or "agreement" in k)
                     else v) for k, v in facts.items()}
        return write_report(self.out, f"robot-rl pipeline: {self.task}", shown,
                            ["pipeline.png", "reward_vs_truth.png", "iql_curves.png", "finetune_curves.png",
                             "iql_episode.gif", "finetune_episode.gif"])


def _summary_plot(facts: dict[str, Any], path: Path) -> None:
    """Two panels: how good the labels and the learned reward are, and the policies' success rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def value(key: str) -> float:
        v = facts.get(key)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else float("nan")

    quality = {"labels vs\nground truth": value("label agreement with ground truth"),
               "reward model\nheld-out acc.": value("reward model held-out accuracy"),
               "learned-true\nreward corr.": value("learned vs true reward correlation (mean over episodes)")}
    success = {"offline IQL\n(learned reward)": value("offline IQL (learned reward) success"),
               "after online\nfine-tuning": value("after online fine-tuning (learned reward) success")}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for ax, data, title in ((axes[0], quality, "labels and learned reward"),
                            (axes[1], success, f"success rate on {facts.get('task', '')} (sim)")):
        bars = ax.bar(list(data), [0 if math.isnan(v) else v for v in data.values()],
                      color=["#4c72b0", "#55a868", "#c44e52"][:len(data)])
        for bar, v in zip(bars, data.values(), strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, "n/a" if math.isnan(v) else f"{v:.2f}",
                    ha="center", fontsize=9)
        ax.set_ylim(0, 1.12)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)
