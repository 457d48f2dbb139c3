"""``robot-rl pipeline``: unlabeled data plus a task sentence to a policy, end to end.

collect -> label pairs -> train the reward model -> relabel the dataset -> offline IQL -> online fine-tuning with
the learned reward -> evaluation; ``report.md`` in the output folder gathers the numbers and plots.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from robot_rl.cli.help_text import command_help
from robot_rl.cli.overrides import apply_overrides, load_yaml
from robot_rl.cli.pipeline_config import check_config
from robot_rl.cli.pipeline_state import StageLog, stage_keys
from robot_rl.rewards.labelers import LABELERS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
MARKER = ".robot-rl-pipeline"
"""Written into an output folder the pipeline creates: ``--overwrite`` deletes only a folder that holds it."""
STAGE_HELP = "collect, label, train-reward, relabel, train, finetune (with evaluation)"


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--config", type=Path, default=None,
                   help="pipeline YAML (default: configs/quickstart.yaml; with --resume: the run's pipeline.yaml)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the config's)")
    p.add_argument("--labeler", choices=tuple(LABELERS), default=None)
    p.add_argument("--vlm-url", default=None, help="OpenAI-compatible base URL of the VLM (with --labeler vlm)")
    p.add_argument("--model", default=None, help="VLM model name (with --labeler vlm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="delete the output folder (one this command made) first")
    mode.add_argument("--resume", action="store_true",
                      help="continue a pipeline in --out: stages done with unchanged settings are skipped, an "
                           "interrupted one continues where it stopped, changed ones and those after them run again")


def run(args: argparse.Namespace) -> int:
    out_arg = args.out
    config = args.config
    if args.resume and config is None:
        if out_arg is None:
            raise ValueError("--resume needs the run's folder: --out DIR (or --config with its out)")
        config = Path(out_arg) / "pipeline.yaml"
        if not config.exists():
            raise FileNotFoundError(f"{out_arg}: no pipeline.yaml, so not a pipeline output folder to resume")
    cfg = load_yaml(config or DEFAULT_CONFIG)
    if args.labeler:
        cfg = apply_overrides(cfg, [f"label.labeler={args.labeler}"])
    if args.vlm_url:
        cfg.setdefault("label", {}).setdefault("vlm", {})["url"] = args.vlm_url
    if args.model:
        cfg.setdefault("label", {}).setdefault("vlm", {})["model"] = args.model
    if args.labeler == "vlm" and "label.segment_length" not in {item.partition("=")[0] for item in args.set}:
        cfg.setdefault("label", {})["segment_length"] = 1  # single frames, as RL-VLM-F
    cfg = apply_overrides(cfg, args.set)
    check_config(cfg)  # every key, type and name, before anything touches the disk
    out = Path(out_arg or cfg.get("out", "runs/pipeline"))
    if args.resume:
        check_resumable(out)
    else:
        prepare_out(out, args.overwrite)
    (out / "pipeline.yaml").write_text(_yaml(cfg))
    return Pipeline(cfg, out, Console(stderr=True)).run()


def check_resumable(out: Path) -> None:
    """``--resume`` continues only a folder this command made."""
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such pipeline output folder to resume; drop --resume to start one")
    if not (out / MARKER).is_file():
        raise ValueError(f"{out} was not made by robot-rl pipeline (no {MARKER} file); nothing to resume")


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create ``out`` with the pipeline's marker file. A non-empty ``out`` is replaced only with ``overwrite`` and
    only when it holds the marker (a folder this command made); anything else is refused and left untouched."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise FileExistsError(f"{out} is not empty and was not made by robot-rl pipeline (no {MARKER} file); "
                                  "nothing deleted: choose another --out or empty it yourself")
        if not overwrite:
            raise FileExistsError(f"{out} holds a pipeline run; pass --resume to continue it, --overwrite to replace "
                                  "it, or --out DIR")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("output folder of robot-rl pipeline; `robot-rl pipeline --overwrite` may delete it\n")


def _yaml(cfg: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)


class StageFailed(Exception):
    """A stage's own command failed and printed its one-line error; carries that command's exit status."""

    def __init__(self, stage: str, code: int) -> None:
        super().__init__(stage)
        self.stage, self.code = stage, code


class Pipeline:
    def __init__(self, cfg: dict[str, Any], out: Path, console: Console) -> None:
        self.cfg, self.out, self.console = cfg, out, console
        self.task = str(cfg.get("task", "metaworld/drawer-open-v3"))
        self.seed = int(cfg.get("seed", 0))
        self.dataset = out / f"{self.task.split('/')[-1]}.h5"
        self.times: dict[str, float] = {}
        self.facts: dict[str, Any] = {}
        self.log = StageLog(out)
        self.keys = stage_keys(cfg)

    def section(self, name: str) -> dict[str, Any]:
        value = self.cfg.get(name) or {}
        if not isinstance(value, dict):
            raise ValueError(f"pipeline config: '{name}' must be a mapping")
        return dict(value)

    def ray_flags(self) -> list[str]:
        """``--ray-address``/``--ray-workers`` from the config's ``ray`` section (none without one)."""
        ray = self.section("ray")
        if not ray.get("address"):
            return []
        workers = ray.get("workers")
        return ["--ray-address", str(ray["address"])] + ([] if workers is None else ["--ray-workers", str(workers)])

    def outputs_exist(self, stage: str) -> bool:
        """Whether what a done stage made is still there (a deleted output makes the stage run again)."""
        paths = {"collect": [self.dataset], "label": [self.out / "labels.sqlite"],
                 "train-reward": [self.out / "reward" / "reward_model.pt"], "relabel": [self.dataset],
                 "train": [self.out / "iql" / "config.yaml"], "finetune": [self.out / "finetune"]}[stage]
        return all(p.exists() for p in paths)

    def run(self) -> int:
        start = time.time()
        if self.log.started_with("collect") not in (None, self.keys["collect"]):
            raise ValueError(f"{self.out}: task, seed or collect settings differ from the ones this folder's data "
                             "was collected with; use --overwrite to start anew, or another --out")
        steps = {"collect": self._collect, "label": self._label, "train-reward": self._train_reward,
                 "relabel": self._relabel, "train": self._train, "finetune": self._finetune}
        rerun = False  # once a stage runs, every stage after it runs too
        try:
            for stage, step in steps.items():
                key = self.keys[stage]
                if not rerun and self.log.is_done(stage, key) and self.outputs_exist(stage):
                    self.console.print(f"[dim]{stage}: done earlier with these settings, skipped")
                    self.facts.update(self.log.facts(stage))
                    self.times[stage] = self.log.seconds(stage) or 0.0
                    continue
                resumed = self.log.started_with(stage) == key
                rerun = True
                self.console.rule(f"[bold]{stage}" + (" (continued)" if resumed else ""))
                self.log.started(stage, key)
                t0 = time.time()
                facts = step(resumed) or {}
                self.facts.update(facts)
                self.times[stage] = time.time() - t0
                self.log.finished(stage, self.times[stage], facts)
        except StageFailed as e:
            print(f"robot-rl pipeline: error: stage {e.stage} failed (exit status {e.code}, its error is above); "
                  f"fix it and run `robot-rl pipeline --resume --out {self.out}` to continue from there",
                  file=sys.stderr)
            return e.code
        self.times["total"] = time.time() - start
        report = self._report()
        self.console.print(f"pipeline finished in {self.times['total'] / 60:.1f} min; report: {report}")
        return 0

    def _call(self, stage: str, argv: list[str]) -> None:
        from robot_rl.cli.main import main

        code = main(argv)
        if code:
            raise StageFailed(stage, code)

    def _collect(self, resumed: bool) -> dict[str, Any]:
        c = self.section("collect")
        argv = ["collect", "--task", self.task, "--episodes", str(c.get("episodes", 60)),
                "--preset", str(c.get("preset", "suboptimal")), "--num-envs", str(c.get("num_envs", 4)),
                "--out", str(self.dataset), *self.ray_flags()]
        if resumed and self.dataset.exists():  # an interrupted collect: fill the file up to the episodes asked
            argv.append("--resume")
        else:
            self.dataset.unlink(missing_ok=True)
            argv += ["--seed", str(self.seed)]
        self._call("collect", argv)
        return {}

    def _relabel(self, resumed: bool) -> dict[str, Any]:
        # an interrupted relabel continues from its spool; a finished one with the same id is replaced
        pessimism = self.section("relabel").get("pessimism")
        self._call("relabel", ["relabel", str(self.dataset), "--source", f"reward-model:{self.out / 'reward'}",
                               "--activate", *self.ray_flags()]
                   + ([] if pessimism is None else ["--pessimism", str(pessimism)]))
        return {}

    def _label(self, resumed: bool) -> dict[str, Any]:
        """Pairs already answered in the folder's label store are not asked again (resumed or re-run)."""
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
        options = {"vlm_url": vlm.get("url"), "model": vlm.get("model"),
                   "api_key_env": str(vlm.get("api_key_env", "OPENAI_API_KEY")),
                   "concurrency": int(vlm.get("concurrency", 4)), "frames_identity": frames_identity,
                   "cache_path": str((self.out / "labels.sqlite.llm-cache").resolve())}
        labeler = make_labeler(kind, teacher=teacher, **options)
        ray = self.section("ray")
        if kind == "vlm" and ray.get("address"):  # VLM queries on Ray workers (the scripted teacher runs here)
            from robot_rl.scale.label import RayVLMLabeler

            labeler = RayVLMLabeler(labeler, str(self.dataset.resolve()), options, str(camera), size,
                                    str(ray["address"]), ray.get("workers"))
        pairs = int(lab.get("pairs", 500))
        with Progress(TextColumn(f"[bold]label ({kind})"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console) as progress:
            bar = progress.add_task("label", total=pairs)
            job = label_dataset(str(self.dataset), labeler, pairs, int(lab.get("segment_length", 50)),
                                selection=str(lab.get("selection", "uniform")), seed=self.seed,
                                store=str(self.out / "labels.sqlite"), camera=vlm.get("camera"), image_size=size,
                                progress=lambda done, total, _label: progress.update(bar, completed=done))
        r = job.result
        acc = "n/a" if math.isnan(job.accuracy) else f"{job.accuracy:.1%}"
        self.console.print(f"{len(r.labels)} pairs labeled ({r.cant_tell} can't tell); agreement with ground "
                           f"truth {acc}")
        return {"labels": {"labeler": kind, "pairs": len(r.labels), "cant_tell": r.cant_tell,
                           "accuracy_vs_ground_truth": job.accuracy, "decided": job.decided}}

    def _train_reward(self, resumed: bool) -> dict[str, Any]:
        from robot_rl.cli.train_reward_cmd import summary
        from robot_rl.rewards.jobs import train_reward
        from robot_rl.rewards.model import RewardModelConfig

        rm = self.section("reward_model")
        config = RewardModelConfig(**{"seed": self.seed, **rm})
        metrics = train_reward(str(self.dataset), self.out / "reward", store=str(self.out / "labels.sqlite"),
                               config=config, overwrite=True)  # the folder is this pipeline's own
        self.console.print(summary(metrics))
        return {"reward_model": metrics}

    def _train(self, resumed: bool) -> dict[str, Any]:
        """An interrupted run continues from its newest checkpoint; a run with other settings starts anew."""
        from robot_rl.nn.checkpoint import checkpoint_paths

        run = self.out / "iql"
        if resumed and checkpoint_paths(run):
            self._call("train", ["train", "--resume", "--out", str(run), "--eval-episodes",
                                 str(self.section("eval").get("episodes", 20))])
            return {}
        shutil.rmtree(run, ignore_errors=True)
        tr = self.section("train")
        argv = ["train", "--dataset", str(self.dataset), "--out", str(self.out / "iql"), "--seed", str(self.seed),
                "--eval-episodes", str(self.section("eval").get("episodes", 20))]
        argv += [f"--set={k}={json.dumps(v)}" for k, v in tr.items()]
        self._call("train", argv)
        return {}

    def _finetune(self, resumed: bool) -> dict[str, Any]:
        """Fine-tuning has no resume of its own: an interrupted or changed one starts anew."""
        shutil.rmtree(self.out / "finetune", ignore_errors=True)
        ft = self.section("finetune")
        argv = ["finetune", "--checkpoint", str(self.out / "iql"), "--out", str(self.out / "finetune"),
                "--steps", str(ft.get("env_steps", 3000)), "--warmup", str(ft.get("warmup_env_steps", 500)),
                "--eval-every", str(ft.get("eval_every", 3000)), "--eval-episodes",
                str(ft.get("eval_episodes", self.section("eval").get("episodes", 20))),
                "--seed", str(ft.get("seed", self.seed)), "--reward", "dataset"]
        from robot_rl.cli.finetune_cmd import FINETUNE_RENAME

        for key in ("offline_ratio", "updates_per_env_step", "threads", "num_envs", "algo", "online_labels",
                    "label_every"):
            if key in ft:
                argv += ["--" + FINETUNE_RENAME.get(key, key).replace("_", "-"), str(ft[key])]
        if ft.get("online_labels"):
            argv += self._labeler_flags()
        self._call("finetune", argv)
        return {}

    def _labeler_flags(self) -> list[str]:
        """The label section's labeler as ``robot-rl finetune`` flags (online labels: same labeler, same store)."""
        lab = self.section("label")
        vlm = dict(lab.get("vlm") or {})
        argv = ["--labeler", str(lab.get("labeler", "scripted")), "--label-store", str(self.out / "labels.sqlite"),
                "--label-selection", "disagreement"]
        teacher = dict(lab.get("teacher") or {})
        for key, value in teacher.items():
            if value is not None:
                argv += ["--" + key.replace("_", "-"), str(value)]
        for key, flag in (("url", "--vlm-url"), ("model", "--model"), ("api_key_env", "--api-key-env"),
                          ("concurrency", "--concurrency"), ("image_size", "--image-size"), ("camera", "--camera")):
            if vlm.get(key) is not None:
                argv += [flag, str(vlm[key])]
        return argv

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
