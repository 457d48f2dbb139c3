"""``robot-rl train-success``: train a success classifier (P(task done | observation)) for sparse fine-tuning rewards.

Examples come from each episode's first frames (negatives), marked episode outcomes (final frames), per-frame labels
of a success labeler (``--labeler scripted|vlm`` asks first, through DATASET.success-labels.sqlite) and, opt-in,
losers of strict preferences (``--preference-negatives``). Simulator ground truth trains only with
``--labels-from ground_truth`` or ``--labeler scripted``; otherwise it is only measured against.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from robot_rl.cli.config_flags import add_config_file_flags, add_config_flags, build_config
from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from robot_rl.rewards.success import SuccessConfig

    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--dataset", type=Path, required=True, help="HDF5 dataset")
    p.add_argument("--out", type=Path, default=Path("runs/success"), help="run folder (default runs/success)")
    flags = add_config_flags(p, SuccessConfig, ("obs", "camera", "image_size", "steps", "threshold",
                                                 "preference_negatives"))
    p.add_argument("--labels-from", choices=("dataset", "ground_truth", "none"), default="dataset",
                   help="episode outcomes: recorded success marks (dataset; not simulator flags), the simulator's "
                        "ground truth (ground_truth, sim only), or none")
    p.add_argument("--labeler", choices=("scripted", "vlm"), default=None,
                   help="first label --frames frames per frame: scripted (ground truth, sim) or vlm")
    p.add_argument("--frames", type=int, default=200, help="frames to label with --labeler (default 200)")
    p.add_argument("--mistake", type=float, default=0.0, help="scripted labeler: probability of a wrong answer")
    p.add_argument("--vlm-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="VLM model name")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--prompt-version", default="success-v1")
    p.add_argument("--label-image-size", type=int, default=224, help="size of frames shown to the VLM")
    p.add_argument("--success-labels", default=None, help="per-frame success label store "
                                                          "(default DATASET.success-labels.sqlite)")
    p.add_argument("--labels", default=None, help="preference label store for --preference-negatives "
                                                  "(default DATASET.labels.sqlite)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    add_config_file_flags(p, SuccessConfig, "members=5")
    p.set_defaults(config_flags=flags)


def run(args: argparse.Namespace) -> int:
    from robot_rl.nn.device import resolve_device
    from robot_rl.rewards.success import SuccessConfig, train_success
    from robot_rl.rewards.success.labels import default_success_store, label_success, make_success_labeler

    console = Console(stderr=True)
    config = build_config(SuccessConfig, args.config_flags, args, "success-classifier")
    resolve_device(args.device)
    check_output(args.out, "--out", "folder")
    dataset = str(args.dataset)
    store = args.success_labels or default_success_store(dataset)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as progress:
        bars: dict[str, TaskID] = {}

        def bar(name: str, done: int, total: int, info: str = "") -> None:
            if name not in bars:
                bars[name] = progress.add_task(name, total=total, info="")
            progress.update(bars[name], completed=done, total=total, info=info)

        job = None
        if args.labeler:
            if args.frames < 1:
                raise ValueError("--frames must be at least 1")
            size = args.label_image_size
            labeler = make_success_labeler(
                args.labeler, mistake=args.mistake, vlm_url=args.vlm_url, model=args.model,
                api_key_env=args.api_key_env, concurrency=args.concurrency, prompt_version=args.prompt_version,
                frames_identity=_frames_identity(dataset, config.camera, size) if args.labeler == "vlm" else None,
                cache_path=store + ".llm-cache" if args.labeler == "vlm" else None)
            job = label_success(dataset, labeler, args.frames, store=store, camera=config.camera, image_size=size,
                                progress=lambda done, total, _label: bar("label frames", done, total))

        def on_progress(phase: str, done: int, total: int, info: dict[str, float]) -> None:
            text = f"loss {info['loss']:.3f} acc {info['accuracy']:.2f}" if info else ""
            bar("render frames" if phase == "frames" else "train", done, total, text)

        metrics = train_success(dataset, args.out, config, labels_from=args.labels_from, success_store=store,
                                preference_store=args.labels, device=args.device, progress=on_progress)
    if job is not None:
        acc = "n/a" if math.isnan(job.accuracy) else f"{job.accuracy:.1%}"
        console.print(f"labeled {len(job.labels)} frames ({job.asked} asked, {job.reused} from {job.store}); "
                      f"agreement with ground truth {acc} of {job.decided} decided")
    console.print(summary_table(metrics))
    for note in metrics.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"success classifier in {args.out} (success_classifier.pt, success_calibration.png). Next: "
                  f"robot-rl relabel {dataset} --source success:{args.out} --id success, or "
                  f"robot-rl finetune ... --reward success:{args.out}")
    return 0


def _frames_identity(dataset: str, camera: str | None, size: int) -> dict[str, Any]:
    from robot_rl.data import Dataset
    from robot_rl.rewards.frames import FrameSource

    with Dataset(dataset) as ds:
        return FrameSource(ds, camera, (size, size)).identity()


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def summary_table(metrics: dict[str, Any]) -> Table:
    """Examples per source, then held-out and ground-truth scores at the chosen threshold."""
    table = Table(title=f"success classifier ({metrics['obs']}), threshold {metrics['threshold']:.3f} "
                        f"({metrics['threshold_rule']})")
    for col in ("", "examples (+/-)", "accuracy", "precision", "recall", "F1", "ECE"):
        table.add_column(col)
    for src, info in metrics["sources"].items():
        agree = info.get("agreement_with_truth")
        table.add_row(f"source {src}", f"{info.get('positives', 0)} / {info.get('negatives', 0)}",
                      "" if agree is None else f"agrees with truth {_pct(agree)}", "", "", "", "")
    for name, cal in (("valid", "valid_calibration"), ("truth", "truth_calibration")):
        s = metrics.get(name)
        if not s:
            continue
        label = "held-out labels" if name == "valid" else "ground truth (eval only)"
        pos = int(s["positives"])
        table.add_row(label, f"{pos} / {int(s['count']) - pos}", _pct(s["accuracy"]), _pct(s["precision"]),
                      _pct(s["recall"]), _pct(s["f1"]), f"{metrics[cal]['ece']:.3f}")
    table.caption = (f"{metrics['train_examples']} training / {metrics['valid_examples']} held-out examples; "
                     f"training {metrics['train_seconds']:.1f} s, frames {metrics['frames_seconds']:.1f} s")
    return table
