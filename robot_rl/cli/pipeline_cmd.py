"""``robot-rl pipeline``: unlabeled data plus a task sentence to a policy, end to end.

collect -> label pairs -> train the reward model -> relabel the dataset -> offline IQL -> online fine-tuning with
the learned reward -> evaluation; ``report.md`` in the output folder gathers the numbers and plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import shutil
import time
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from rich.console import Console

from robot_rl.cli.help_text import command_help
from robot_rl.cli.overrides import apply_overrides, load_yaml
from robot_rl.rewards.labelers import LABELERS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
STAGES = ("collect", "label", "train-reward", "relabel", "train", "finetune", "eval")
MARKER = ".robot-rl-pipeline"
"""Written into an output folder the pipeline creates: ``--overwrite`` deletes only a folder that holds it."""
TOP_LEVEL: dict[str, Any] = {"task": str, "out": str, "seed": int, "collect": dict, "label": dict,
                             "reward_model": dict, "train": dict, "finetune": dict, "eval": dict}
"""Top-level keys of a pipeline config and their types."""
COLLECT_KEYS: dict[str, Any] = {"episodes": int, "preset": str, "num_envs": int}
LABEL_KEYS: dict[str, Any] = {"labeler": str, "pairs": int, "segment_length": int, "selection": str,
                              "teacher": dict, "vlm": dict}
VLM_KEYS: dict[str, Any] = {"url": str | None, "model": str | None, "api_key_env": str, "concurrency": int,
                            "image_size": int, "camera": str | None}
EVAL_KEYS: dict[str, Any] = {"episodes": int}
FINETUNE_EXTRA: dict[str, Any] = {"num_envs": int}
"""finetune keys besides the FinetuneConfig fields that ``robot-rl finetune`` takes as flags."""


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
    check_config(cfg)  # every key, type and name, before anything touches the disk
    out = Path(args.out or cfg.get("out", "runs/pipeline"))
    prepare_out(out, args.overwrite)
    (out / "pipeline.yaml").write_text(_yaml(cfg))
    return Pipeline(cfg, out, Console(stderr=True)).run()


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
            raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it, or --out DIR")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("output folder of robot-rl pipeline; `robot-rl pipeline --overwrite` may delete it\n")


def check_config(cfg: dict[str, Any]) -> None:
    """Raise a one-line ``ValueError`` for an unknown section or key (with the closest valid name), a value of the
    wrong type, an unknown task, labeler, preset or selection, or a dataclass section its class rejects."""
    from robot_rl.cli.finetune_cmd import FINETUNE_FLAGS
    from robot_rl.data.behaviours import PRESETS
    from robot_rl.rewards.labelers.scripted import TeacherConfig
    from robot_rl.rewards.model import RewardModelConfig
    from robot_rl.rewards.pairs import SELECTIONS
    from robot_rl.rl.finetune import FinetuneConfig
    from robot_rl.rl.train import TrainConfig

    _check_keys(cfg, TOP_LEVEL, "")
    sections = {name: _mapping(cfg, name, name) for name in TOP_LEVEL if TOP_LEVEL[name] is dict}
    _check_keys(sections["collect"], COLLECT_KEYS, "collect.")
    _check_keys(sections["label"], LABEL_KEYS, "label.")
    _check_keys(sections["eval"], EVAL_KEYS, "eval.")
    _check_keys(_mapping(sections["label"], "vlm", "label.vlm"), VLM_KEYS, "label.vlm.")
    teacher = _mapping(sections["label"], "teacher", "label.teacher")
    _check_dataclass(TeacherConfig, teacher, "label.teacher.", exclude={"seed": "the top-level seed"})
    _check_dataclass(RewardModelConfig, sections["reward_model"], "reward_model.")
    _check_dataclass(TrainConfig, sections["train"], "train.", exclude={"dataset": "the pipeline's collected data"})
    ft = sections["finetune"]
    ft_fields = {n: t for n, t in get_type_hints(FinetuneConfig).items() if n in FINETUNE_FLAGS}
    not_flags = {f.name: "robot-rl finetune, which has no flag for it" for f in dataclasses.fields(FinetuneConfig)
                 if f.name not in FINETUNE_FLAGS}
    _check_keys(ft, {**ft_fields, **FINETUNE_EXTRA}, "finetune.", not_flags)
    for value, known, where in ((cfg.get("task", "metaworld/drawer-open-v3"), None, "task"),
                                (sections["collect"].get("preset", "suboptimal"), sorted(PRESETS), "collect.preset"),
                                (sections["label"].get("labeler", "scripted"), list(LABELERS), "label.labeler"),
                                (sections["label"].get("selection", "uniform"), list(SELECTIONS), "label.selection")):
        if known is None:
            from robot_rl.envs import list_tasks

            known = list_tasks()
        if value not in known:
            raise ValueError(f"pipeline config: {where} '{value}' is unknown{_did_you_mean(str(value), known)}; "
                             f"choose one of: {', '.join(known)}")
    try:
        TeacherConfig(**teacher)
        RewardModelConfig(**sections["reward_model"])
        TrainConfig.from_dict({**sections["train"], "dataset": "pipeline.h5"})
        FinetuneConfig(**{k: v for k, v in ft.items() if k not in FINETUNE_EXTRA})
    except (TypeError, ValueError) as e:
        raise ValueError(f"pipeline config: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"pipeline config: '{where}' must be a mapping, got {value!r}")
    return value


def _did_you_mean(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(name, [str(v) for v in valid], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(values: dict[str, Any], types_: dict[str, Any], where: str,
                not_here: dict[str, str] | None = None) -> None:
    """Each key of ``values`` must be in ``types_`` and its value of that type; ``not_here``: key -> what sets it
    instead (a valid field name that this section must not set)."""
    not_here = not_here or {}
    for key, value in values.items():
        if key in not_here:
            raise ValueError(f"pipeline config: {where}{key} cannot be set here (it comes from {not_here[key]})")
        if key not in types_:
            valid = [k for k in types_ if k not in not_here]
            raise ValueError(f"pipeline config: unknown key {where}{key}{_did_you_mean(str(key), valid)}; valid keys: "
                             f"{', '.join(valid)}")
        if types_[key] is not dict and not _type_ok(types_[key], value):
            raise ValueError(f"pipeline config: {where}{key} must be {_type_name(types_[key])}, got {value!r}")


def _check_dataclass(cls: type, values: dict[str, Any], where: str, exclude: dict[str, str] | None = None) -> None:
    """``_check_keys`` against the fields of the dataclass ``cls``, into fields that are dataclasses themselves."""
    hints = get_type_hints(cls)
    _check_keys(values, {n: (dict if dataclasses.is_dataclass(t) else t) for n, t in hints.items()
                         if n in {f.name for f in dataclasses.fields(cls)}}, where, exclude)
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"pipeline config: '{where}{key}' must be a mapping, got {value!r}")
            _check_dataclass(hints[key], value, f"{where}{key}.")


def _type_ok(tp: Any, value: Any) -> bool:
    """Whether a YAML value fits the annotation ``tp`` (types this check does not know pass)."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_type_ok(t, value) for t in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if origin is tuple or tp is tuple:
        args = get_args(tp)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return isinstance(value, list | tuple) and all(_type_ok(inner, v) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _type_name(tp: Any) -> str:
    if get_origin(tp) is tuple:
        return "a list"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


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
                str(ft.get("eval_episodes", self.section("eval").get("episodes", 20))),
                "--seed", str(ft.get("seed", self.seed)), "--reward", "dataset"]
        from robot_rl.cli.finetune_cmd import FINETUNE_RENAME

        for key in ("offline_ratio", "updates_per_env_step", "threads", "num_envs", "algo"):
            if key in ft:
                argv += ["--" + FINETUNE_RENAME.get(key, key).replace("_", "-"), str(ft[key])]
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
