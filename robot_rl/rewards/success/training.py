"""Training of the success classifier (``classifier.py``) on the examples of ``examples.py``; the threshold,
scores and calibration plot.

Held-out examples are whole episodes (``valid_fraction``); the threshold (unless fixed) maximizes F1 on them
(ties: closest to 0.5; 0.5 when they lack either class). Ground-truth success, where the simulator recorded it,
is used for evaluation only (``truth_*`` metrics), never for training unless ``labels_from="ground_truth"`` or the
scripted teacher was chosen.

```
metrics = train_success("d.h5", "runs/success", SuccessConfig(obs="state"), labels_from="ground_truth")
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from robot_rl.data import Dataset, Episode
from robot_rl.nn.cuda_graph import STEPS_PER_REPLAY, StepGraphs
from robot_rl.nn.device import resolve_device
from robot_rl.nn.networks import random_shift
from robot_rl.nn.payload import plain
from robot_rl.rewards.base import Segment, SegmentRef
from robot_rl.rewards.success.classifier import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PLOT_FILE,
    SuccessClassifier,
    SuccessConfig,
)
from robot_rl.rewards.success.examples import collect_examples
from robot_rl.rewards.success.labels import (
    SuccessError,
    frame_truth,
)

Progress = Callable[[str, int, int, dict[str, float]], None]
"""``(phase, done, total, info)``; phase ``"frames"`` (rendering) or ``"train"``."""


def _frames_for(fs: Any, name: str, ep: Episode, steps: Sequence[int]) -> np.ndarray:
    seg = Segment(SegmentRef(name, 0, ep.length), ep.states, ep.actions, ep.rewards, ep.sim_states)
    return np.asarray(fs.frames(seg, list(steps)))


def _gather(ds: Dataset, fs: Any, items: Sequence[tuple[str, int]], episodes: dict[str, Episode],
            progress: Progress | None, done0: int = 0, total: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """States ``[N, D]`` and (with a frame source) frames ``[N, H, W, 3]`` of ``(episode, step)`` items."""
    states = np.stack([episodes[n].states[k] for n, k in items]).astype(np.float32) if items \
        else np.zeros((0, ds.spec.state_dim), np.float32)
    if fs is None:
        return states, None
    frames = np.empty((len(items), *fs.size, 3), np.uint8)
    by_episode: dict[str, list[int]] = {}
    for i, (n, _) in enumerate(items):
        by_episode.setdefault(n, []).append(i)
    done = done0
    for n, idx in by_episode.items():
        frames[idx] = _frames_for(fs, n, episodes[n], [items[i][1] for i in idx])
        done += len(idx)
        if progress is not None:
            progress("frames", done, total or len(items), {})
    return states, frames


def _pick_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """Max-F1 threshold on held-out ``(p, y)`` (ties: closest to 0.5); 0.5 when either class is absent."""
    if len(y) == 0 or y.min() == y.max():
        return 0.5, "0.5 (held-out examples lack a class)"
    best, best_f1 = 0.5, -1.0
    sorted_p = np.unique(p)
    for t in np.concatenate([[0.5], (sorted_p[1:] + sorted_p[:-1]) / 2]):
        f1 = _scores(p, y, float(t))["f1"]
        if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(t), f1
    return min(max(best, 1e-6), 1 - 1e-6), "max F1 on held-out examples"


def _scores(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    pred, pos = p >= threshold, y > 0.5
    tp, fp = float((pred & pos).sum()), float((pred & ~pos).sum())
    fn, tn = float((~pred & pos).sum()), float((~pred & ~pos).sum())
    n = max(len(y), 1)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    specificity = tn / (tn + fp) if tn + fp else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    parts = [v for v in (recall, specificity) if math.isfinite(v)]
    return {"accuracy": (tp + tn) / n, "precision": precision, "recall": recall, "f1": f1 if f1 == f1 else 0.0,
            "balanced_accuracy": float(np.mean(parts)) if parts else math.nan, "count": float(len(y)),
            "positives": float(pos.sum())}


def calibration_bins(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability of ``p`` against outcomes ``y``: per equal-width bin the mean p, the outcome frequency and the
    count; ECE (count-weighted |frequency - mean p|) and the Brier score."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    mean_p, freq, count = [], [], []
    for b in range(bins):
        m = which == b
        count.append(int(m.sum()))
        mean_p.append(float(p[m].mean()) if m.any() else math.nan)
        freq.append(float(y[m].mean()) if m.any() else math.nan)
    ece = sum(c * abs(f - mp) for c, f, mp in zip(count, freq, mean_p, strict=True) if c) / max(len(p), 1)
    brier = float(np.mean((p - y) ** 2)) if len(p) else math.nan
    return {"mean_p": mean_p, "frequency": freq, "count": count, "ece": float(ece), "brier": brier}


def plot_calibration(path: Path, held_out: tuple[np.ndarray, np.ndarray],
                     truth: tuple[np.ndarray, np.ndarray] | None, threshold: float, title: str) -> None:
    """Reliability diagram (held-out labels, and ground truth where known) and histograms of p per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    curves = [("held-out labels", held_out, "tab:blue")]
    if truth is not None and len(truth[0]):
        curves.append(("ground-truth success (eval only)", truth, "tab:orange"))
    for label, (p, y), color in curves:
        cal = calibration_bins(p, y)
        mp, fr, cnt = (np.array(cal[k], np.float64) for k in ("mean_p", "frequency", "count"))
        ok = cnt > 0
        ax.plot(mp[ok], fr[ok], marker="o", color=color, label=f"{label} (ECE {cal['ece']:.3f}, n={len(p)})")
    ax.axvline(threshold, color="tab:red", linewidth=1, label=f"threshold {threshold:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(success)", ylabel="observed success frequency",
           title="reliability")
    ax.legend(fontsize=7, loc="upper left")
    p, y = held_out
    bins = np.linspace(0, 1, 21)
    hx.hist(p[y > 0.5], bins=bins, alpha=0.6, color="tab:green", label="labeled success")
    hx.hist(p[y <= 0.5], bins=bins, alpha=0.6, color="tab:gray", label="labeled not success")
    hx.axvline(threshold, color="tab:red", linewidth=1)
    hx.set(xlabel="predicted P(success)", ylabel="held-out examples", title="held-out predictions")
    hx.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit_classifier(config: SuccessConfig, state_dim: int, camera: str | None, states: np.ndarray,
                   frames: np.ndarray | None, labels: np.ndarray, weights: np.ndarray, device: str | torch.device,
                   progress: Progress | None = None, model: SuccessClassifier | None = None,
                   ) -> tuple[SuccessClassifier, dict[str, float]]:
    """Train with BCE: each member draws its own minibatch from a class-balanced distribution (each class holds half
    the sampling mass, examples within a class in proportion to their ``weights``); frames get random shifts.
    ``model``: train that classifier on from where it is (its input normalization and threshold kept) instead of a
    new one."""
    dev = resolve_device(device)
    if model is None:
        mean = states.astype(np.float64).mean(0)
        std = np.maximum(states.astype(np.float64).std(0), 1e-3)
        model = SuccessClassifier(config, state_dim, camera, mean, std).to(dev)
    y = torch.as_tensor(labels, dtype=torch.float32, device=dev)
    w = torch.as_tensor(weights, dtype=torch.float64, device=dev)
    pos = y > 0.5
    mass = torch.where(pos, w / w[pos].sum(), w / w[~pos].sum()) * 0.5
    s_norm = None
    if config.uses_state:
        s_norm = (torch.as_tensor(states, device=dev) - model.state_mean) / model.state_std
    f_all = None if frames is None else torch.as_tensor(frames, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator(device=dev)
    gen.manual_seed(config.seed)
    e, b = config.members, config.batch_size
    model.train()
    window = torch.zeros(2, device=dev)
    last = {"loss": math.nan, "accuracy": math.nan}

    def step() -> torch.Tensor:
        """One AdamW step; ``[2]``: the mean member loss and the accuracy of the batch (no host sync)."""
        idx = torch.multinomial(mass, e * b, replacement=True, generator=gen).reshape(e, b)
        sv = None if s_norm is None else s_norm[idx]
        fv = None
        if f_all is not None:
            fv = f_all[idx]
            if config.shift_pad > 0:
                fv = random_shift(fv.flatten(0, 1), config.shift_pad, gen).reshape(fv.shape)
        logits = model.member_logits(sv, fv)
        target = y[idx]
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="mean") * e
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            return torch.stack([loss.detach() / e, ((logits > 0) == (target > 0.5)).float().mean()])

    graphs = (StepGraphs(step, [model], opt, [gen], STEPS_PER_REPLAY)
              if dev.type == "cuda" and config.cuda_graphs else None)
    done = 0
    while done < config.steps:
        n = min(STEPS_PER_REPLAY if graphs else 1, config.steps - done, config.log_every - done % config.log_every)
        window += graphs.run(n) if graphs else step()
        done += n
        if done % config.log_every == 0 or done == config.steps:
            n_logged = config.log_every if done % config.log_every == 0 else done % config.log_every
            loss_v, acc_v = (window / n_logged).tolist()
            last = {"loss": loss_v, "accuracy": acc_v}
            window.zero_()
            if progress is not None:
                progress("train", done, config.steps, last)
    model.eval()
    return model, last


def train_success(dataset: str, out: str | Path, config: SuccessConfig | None = None, *,
                  labels_from: str = "dataset", success_store: str | None = None,
                  preference_store: str | None = None, device: str = "auto",
                  progress: Progress | None = None) -> dict[str, Any]:
    """Train a success classifier on ``dataset`` into ``out``: ``success_classifier.pt``, ``success_config.yaml``,
    ``success_metrics.json``, ``success_calibration.png``. Returns the metrics (held-out accuracy, precision,
    recall, F1, calibration; ``truth_*`` against simulator ground truth where the data has it)."""
    config = config or SuccessConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with Dataset(dataset) as ds:
        ex, record = collect_examples(ds, config, labels_from, success_store, preference_store)
        fs = None
        camera = None
        if config.uses_image:
            from robot_rl.rewards.frames import FrameSource

            fs = FrameSource(ds, config.camera, (config.image_size, config.image_size))
            camera = fs.camera
        try:
            names = sorted(set(ex.episodes), key=ds.episode_names.index)
            order = np.random.default_rng(config.seed).permutation(len(names))
            n_valid = min(int(round(config.valid_fraction * len(names))), max(len(names) - 1, 0))
            if config.valid_fraction > 0 and len(names) >= 2:
                n_valid = max(n_valid, 1)
            valid_eps = {names[i] for i in order[:n_valid]}
            is_valid = np.array([n in valid_eps for n in ex.episodes], bool)
            episodes = {n: ds.load_episode(n) for n in names}
            eval_items: list[tuple[str, int]] = []
            rng = np.random.default_rng(config.seed + 1)
            for n in sorted(valid_eps, key=names.index):
                truth = frame_truth(episodes[n])
                known = np.flatnonzero(np.isfinite(truth))
                if config.uses_image and len(known) > config.eval_frames:
                    known = np.sort(rng.choice(known, config.eval_frames, replace=False))
                eval_items += [(n, int(k)) for k in known]
            items = list(zip(ex.episodes, ex.steps, strict=True))
            total = len(items) + (len(eval_items) if fs is not None else 0)
            t_frames = time.perf_counter()
            states, frames = _gather(ds, fs, items, episodes, progress, 0, total)
            eval_states, eval_frames = _gather(ds, fs, eval_items, episodes, progress, len(items), total)
            frames_s = time.perf_counter() - t_frames
        finally:
            if fs is not None:
                fs.close()
        spec_name, task_text, state_dim = ds.spec.name, ds.task_text, ds.spec.state_dim
    labels = np.asarray(ex.labels, np.float32)
    weights = np.asarray(ex.weights, np.float32)
    train = ~is_valid
    if not (labels[train] > 0.5).any() or not (labels[train] <= 0.5).any():
        raise SuccessError(f"{dataset}: the training episodes lack positive or negative examples "
                           f"({int((labels[train] > 0.5).sum())} / {int((labels[train] <= 0.5).sum())}); "
                           "label more frames or lower valid_fraction")
    t_train = time.perf_counter()
    model, last = fit_classifier(config, state_dim, camera, states[train],
                                 None if frames is None else frames[train], labels[train], weights[train], device,
                                 progress)
    train_s = time.perf_counter() - t_train

    def prob(s: np.ndarray, f: np.ndarray | None) -> np.ndarray:
        obs: dict[str, Any] = {"state": torch.as_tensor(s)}
        if f is not None and camera is not None:
            obs[f"image/{camera}"] = torch.as_tensor(f)
        if len(s) == 0:
            return np.zeros(0, np.float32)
        return model.probability(obs).cpu().numpy()

    p_all = prob(states, frames)
    p_valid, y_valid = p_all[is_valid], labels[is_valid]
    if config.threshold is not None:
        threshold, how = float(config.threshold), "fixed"
    else:
        threshold, how = _pick_threshold(p_valid, y_valid)
    model.threshold = threshold
    metrics: dict[str, Any] = {
        "obs": config.obs, "camera": camera, "threshold": threshold, "threshold_rule": how,
        "examples": len(ex), "train_examples": int(train.sum()), "valid_examples": int(is_valid.sum()),
        "train_episodes": len(names) - len(valid_eps), "valid_episodes": len(valid_eps),
        "train_loss": last["loss"], "train_accuracy": _scores(p_all[train], labels[train], threshold)["accuracy"],
        "valid": _scores(p_valid, y_valid, threshold), "valid_calibration": calibration_bins(p_valid, y_valid),
        "sources": record["sources"], "notes": record["notes"], "train_seconds": train_s, "frames_seconds": frames_s,
        "total_seconds": time.perf_counter() - t_start}
    truth_pair = None
    if eval_items:
        truth_y = np.array([frame_truth(episodes[n])[k] for n, k in eval_items], np.float32)
        p_truth = prob(eval_states, eval_frames)
        truth_pair = (p_truth, truth_y)
        metrics["truth"] = _scores(p_truth, truth_y, threshold)
        metrics["truth_calibration"] = calibration_bins(p_truth, truth_y)
        metrics["truth_note"] = ("simulator ground truth on held-out episodes, evaluation only: "
                                 + ("every step" if not config.uses_image else f"{config.eval_frames} frames each"))
    provenance = {"dataset": os.path.abspath(dataset), "env": spec_name, "task_text": task_text,
                  "time": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    model.metrics, model.provenance = metrics, provenance
    model.save(out / MODEL_FILE)
    settings = {"dataset": os.path.abspath(dataset), "camera": camera, "threshold": threshold,
                "labels_from": labels_from, **dataclasses.asdict(config)}
    (out / CONFIG_FILE).write_text(yaml.safe_dump(plain(settings, json_safe=True), sort_keys=False))
    (out / METRICS_FILE).write_text(json.dumps(plain({**metrics, "provenance": provenance}, json_safe=True),
                                               indent=2))
    plot_calibration(out / PLOT_FILE, (p_valid, y_valid), truth_pair, threshold,
                     f"success classifier ({config.obs}) on {os.path.basename(dataset)}: held-out accuracy "
                     f"{metrics['valid']['accuracy']:.1%}")
    return metrics
