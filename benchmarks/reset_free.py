"""Reset-free fine-tuning on drawer-open / drawer-close: success with resets before (offline-only IQL) and after,
with the learned success classifier's reward vs the simulator's ground-truth success, and interventions.

Per task: one `suboptimal` dataset (collected once, seed 0) and one state success classifier (robot_rl.rewards.success,
``labels_from="ground_truth"``: first frames negative, last frames of marked episodes positive). With
``--classifier-labels scripted`` (default) the classifier also trains on ``--label-frames`` per-frame labels of the
scripted success teacher (simulator ground truth, mistake rate ``--label-mistake``, default 0), asked through the
dataset's success label store (``<dataset>.success-labels.sqlite``; every episode's last frame, then uniformly drawn
frames): the "labeled segments" path, which covers more of the state distribution than first/final frames.
``--classifier-labels final`` is the first run's classifier (first/final frames only; the store is not read).
Per seed: offline IQL for both tasks, then reset-free fine-tuning from those checkpoints with (i) the classifiers
as success signals and (ii) ground-truth success signals. "Before" is the offline-only policy evaluated with resets
on fixed layouts; "after" the same evaluation after fine-tuning.

    nice python benchmarks/reset_free.py                          # defaults below, 3 seeds
    nice python benchmarks/reset_free.py --seeds 0 --steps 2000   # one quick seed
    nice python benchmarks/reset_free.py --classifier-labels final  # the first run's final-frame classifier

Writes runs under --root, results-<tags>-n<steps>.json there, and prints the markdown table (paste into
benchmarks/reset_free.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

TASKS = ("drawer-open-v3", "drawer-close-v3")
VARIANTS = ("classifier", "ground_truth")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=30, help="episodes per offline dataset")
    p.add_argument("--pretrain-steps", type=int, default=2000, help="offline IQL updates per task and seed")
    p.add_argument("--classifier-steps", type=int, default=1000)
    p.add_argument("--classifier-labels", choices=("final", "scripted"), default="scripted",
                   help="final: first/final frames only; scripted: plus --label-frames scripted-teacher labels")
    p.add_argument("--label-frames", type=int, default=600, help="scripted-teacher frames per task dataset")
    p.add_argument("--label-mistake", type=float, default=0.0, help="scripted teacher's mistake rate")
    p.add_argument("--steps", type=int, default=3000, help="reset-free env steps per run (both directions)")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--critic-warmup", type=int, default=2000,
                   help="value/critic updates on the relabeled offline data before the online phase")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--threshold", type=float, default=None,
                   help="classifier variant: fixed decision threshold for both classifiers (default: each classifier's "
                        "own, max F1 on held-out frames)")
    p.add_argument("--home", action="store_true",
                   help="move the arm home between attempts (ResetFreeConfig.home); runs tagged '-home'")
    p.add_argument("--soft-reward", action="store_true",
                   help="reward = scale * the signal's probability (ResetFreeConfig.soft_reward); runs tagged '-soft'")
    p.add_argument("--verify-claims", type=int, default=0, metavar="N",
                   help="classifier variant: a scripted teacher checks up to N claims per direction "
                        "(VerifiedSuccess); runs tagged '-vN'")
    p.add_argument("--claim-mistake", type=float, default=0.0, help="the claim teacher's mistake rate")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    p.add_argument("--root", type=Path, default=Path("runs/reset_free_bench"))
    args = p.parse_args()

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from robot_rl.cli.main import main as cli
    from robot_rl.envs.reset_free import MetaWorldPairBackend
    from robot_rl.rewards.success import ClassifierSuccess, SuccessConfig, train_success
    from robot_rl.rewards.success.labels import ScriptedSuccessTeacher, label_success
    from robot_rl.rewards.success.verify import ScriptedClaimTeacher, VerifiedSuccess, VerifyConfig
    from robot_rl.rl.reset_free import GroundTruthSuccess, ResetFreeConfig, reset_free_finetune
    from robot_rl.rl.reset_free_report import write_report

    torch.set_num_threads(args.threads)
    start = time.time()
    args.root.mkdir(parents=True, exist_ok=True)
    classifier_metrics = {}
    label_jobs: dict[str, dict[str, Any]] = {}
    clf_tag = "" if args.classifier_labels == "final" else \
        f"-scripted{args.label_frames}" + (f"-m{args.label_mistake:g}" if args.label_mistake else "")
    for task in TASKS:
        data = args.root / f"{task}.h5"
        if not data.exists():
            assert cli(["collect", "--task", f"metaworld/{task}", "--preset", "suboptimal", "--episodes",
                        str(args.episodes), "--num-envs", "4", "--seed", "0", "--out", str(data)]) == 0
        clf = args.root / f"success-{task}{clf_tag}"
        if "classifier" in args.variants and not (clf / "success_classifier.pt").exists():
            if args.classifier_labels == "scripted":
                # The dataset's success label store; answers already stored there are reused, not asked again.
                job = label_success(str(data), ScriptedSuccessTeacher(args.label_mistake, seed=0), args.label_frames)
                label_jobs[task] = {"store": job.store, "asked": job.asked, "reused": job.reused,
                                    "accuracy_vs_truth": job.accuracy,
                                    "positives": sum(1 for lb in job.labels if lb.value is not None and lb.value > 0.5),
                                    "labels": len(job.labels)}
                store = job.store
            else:
                store = str(args.root / "no-success-labels.sqlite")  # never created: first/final frames only
                assert not os.path.exists(store)
            train_success(str(data), clf, SuccessConfig(obs="state", steps=args.classifier_steps),
                          labels_from="ground_truth", success_store=store)
        if (clf / "success_metrics.json").exists():
            classifier_metrics[task] = json.loads((clf / "success_metrics.json").read_text())
    t_setup = time.time() - start
    thr_tag = "" if args.threshold is None else f"-t{args.threshold:g}"
    home_tag = ("-home" if args.home else "") + ("-soft" if args.soft_reward else "")
    verify_tag = (f"-v{args.verify_claims}" + (f"m{args.claim_mistake:g}" if args.claim_mistake else "")
                  if args.verify_claims else "")
    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        for task in TASKS:
            run = args.root / f"iql-{task}-s{seed}"
            if not (run / "checkpoints").exists():
                assert cli(["train", "--dataset", str(args.root / f"{task}.h5"), "--steps", str(args.pretrain_steps),
                            "--seed", str(seed), "--out", str(run), "--eval-episodes", "0", "--device", "cpu"]) == 0
        for variant in args.variants:
            tag = clf_tag + thr_tag + verify_tag if variant == "classifier" else ""
            out = args.root / f"rf-{variant}{tag}{home_tag}-cw{args.critic_warmup}-n{args.steps}-s{seed}"
            if not (out / "summary.json").exists():
                backend = MetaWorldPairBackend("drawer", seed=seed)
                if variant == "classifier":
                    signals: Any = tuple(ClassifierSuccess(args.root / f"success-{t}{clf_tag}",
                                                           threshold=args.threshold) for t in TASKS)
                    if args.verify_claims:
                        signals = tuple(VerifiedSuccess(sig, ScriptedClaimTeacher(args.claim_mistake, seed=seed),
                                                        VerifyConfig(budget=args.verify_claims, seed=seed), t)
                                        for sig, t in zip(signals, TASKS, strict=True))
                else:
                    signals = (GroundTruthSuccess(backend.specs[0]), GroundTruthSuccess(backend.specs[1]))
                cfg = ResetFreeConfig(steps=args.steps, eval_episodes=args.eval_episodes, log_every=500, seed=seed,
                                      critic_warmup_updates=args.critic_warmup, home=args.home,
                                      soft_reward=args.soft_reward)
                t0 = time.time()
                columns = (TextColumn(f"[bold]{variant} s{seed}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
                try:
                    with Progress(*columns) as progress:
                        bar = progress.add_task("rf", total=args.steps, info="")

                        def on_progress(step: int, m: dict[str, float], bar: Any = bar, progress: Any = progress
                                        ) -> None:
                            progress.update(bar, completed=step,
                                            info=f"interventions {int(m['interventions'])}, fwd true "
                                                 f"{m['forward/true_rate']:.0%}")

                        fwd, bwd = (args.root / f"iql-{t}-s{seed}" for t in TASKS)
                        reset_free_finetune(fwd, bwd, backend, signals, cfg, out, on_progress=on_progress)
                finally:
                    backend.close()
                write_report(out, f"reset-free drawer, {variant} reward, seed {seed}",
                             {"wall time": f"{time.time() - t0:.0f} s"})
            s = json.loads((out / "summary.json").read_text())
            results.append({"seed": seed, "variant": variant, **_row(s)})
    classifiers = {t: {"valid_accuracy": m.get("valid", {}).get("accuracy"),
                       "truth_accuracy": m.get("truth", {}).get("accuracy"),
                       "truth_recall": m.get("truth", {}).get("recall"), "threshold": m.get("threshold"),
                       "sources": {k: {"positives": v.get("positives"), "negatives": v.get("negatives")}
                                   for k, v in m.get("sources", {}).items()}}
                   for t, m in classifier_metrics.items()}
    (args.root / f"results{clf_tag}{thr_tag}{verify_tag}{home_tag}-n{args.steps}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "classifiers": classifiers,
         "label_jobs": label_jobs, "total_seconds": time.time() - start}, indent=1))
    print(f"\n{len(args.seeds)} seeds; {args.episodes}-episode suboptimal datasets; {args.pretrain_steps} offline "
          f"updates; critic warm-up {args.critic_warmup}; {args.steps} reset-free steps per run; "
          f"{args.eval_episodes} eval episodes per direction; "
          f"classifier labels {args.classifier_labels}"
          + (f" ({args.label_frames} scripted frames, mistake {args.label_mistake:g})" if clf_tag else "")
          + f"; setup {t_setup:.0f} s, total {time.time() - start:.0f} s\n")
    for t, c in classifiers.items():
        acc, rec = c["truth_accuracy"], c["truth_recall"]
        print(f"classifier {t}: held-out step accuracy vs ground truth "
              f"{'n/a' if acc is None else f'{acc:.1%}'}, recall {'n/a' if rec is None else f'{rec:.1%}'}, "
              f"threshold {c['threshold']:.2f}, sources {c['sources']}")
    print(table(results))
    print(queries_line(results))


def _row(s: dict[str, Any]) -> dict[str, Any]:
    m = s["metrics"]
    return {"before_fwd": s["eval_before"]["forward"], "before_bwd": s["eval_before"]["backward"],
            "after_fwd": s["eval_after"]["forward"], "after_bwd": s["eval_after"]["backward"],
            "interventions_per_1k": s["interventions_per_1k_steps"], "interventions": s["interventions"],
            "true_fwd": m["forward/true_rate_from_unsolved"], "claimed_fwd": m["forward/claimed_rate"],
            "false_claims": (m["forward/false_claims"] or 0) + (m["backward/false_claims"] or 0),
            "acc_fwd": m["forward/signal_step_accuracy"], "acc_bwd": m["backward/signal_step_accuracy"],
            "recall_fwd": m.get("forward/signal_step_recall"), "recall_bwd": m.get("backward/signal_step_recall"),
            "queries": {d: {k: int(m.get(f"{d}/claims_{k}", 0)) for k in ("confirmed", "rejected")}
                        for d in ("forward", "backward")}}


def queries_line(results: list[dict[str, Any]]) -> str:
    """The claim teacher's answers per run (``--verify-claims``), or "" when none was asked."""
    parts = []
    for r in results:
        q = r["queries"]
        if any(sum(v.values()) for v in q.values()):
            parts.append(f"s{r['seed']} {r['variant']}: forward {q['forward']['confirmed']}/"
                         f"{q['forward']['rejected']}, backward {q['backward']['confirmed']}/"
                         f"{q['backward']['rejected']}")
    return "teacher queries (confirmed/rejected): " + "; ".join(parts) if parts else ""


def table(results: list[dict[str, Any]]) -> str:
    def pct(values: list[Any]) -> str:
        vals = [v for v in values if v is not None and v == v]  # None, NaN: not measured
        return ", ".join(f"{v:.0%}" for v in vals) + (f" (mean {np.mean(vals):.0%})" if len(vals) > 1 else "")

    def num(values: list[Any]) -> str:
        vals = [v for v in values if v is not None and v == v]  # None, NaN: not measured
        return ", ".join(f"{v:.2f}" for v in vals) + (f" (mean {np.mean(vals):.2f})" if len(vals) > 1 else "")

    lines = ["| method | forward success, resets | backward success, resets | interventions / 1,000 steps "
             "| forward attempts solved (from unsolved, GT) | false claims | signal step accuracy fwd / bwd "
             "| signal step recall fwd / bwd |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    first = [r for r in results if r["variant"] == results[0]["variant"]] if results else []
    lines.append(f"| offline-only IQL | {pct([r['before_fwd'] for r in first])} | "
                 f"{pct([r['before_bwd'] for r in first])} | n/a | n/a | n/a | n/a | n/a |")
    for variant, label in (("classifier", "reset-free, classifier reward"),
                           ("ground_truth", "reset-free, ground-truth reward")):
        rs = [r for r in results if r["variant"] == variant]
        if rs:
            lines.append(f"| {label} | {pct([r['after_fwd'] for r in rs])} | {pct([r['after_bwd'] for r in rs])} "
                         f"| {num([r['interventions_per_1k'] for r in rs])} | {pct([r['true_fwd'] for r in rs])} "
                         f"| {', '.join(str(int(r['false_claims'])) for r in rs)} "
                         f"| {pct([r['acc_fwd'] for r in rs])} / {pct([r['acc_bwd'] for r in rs])} "
                         f"| {pct([r.get('recall_fwd') for r in rs])} / {pct([r.get('recall_bwd') for r in rs])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
