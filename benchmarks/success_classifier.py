"""Success classifier quality and online cost (writes nothing but its printout; results in success_classifier.md).

    MUJOCO_GL=egl python benchmarks/success_classifier.py DRAWER_OPEN.h5 DRAWER_CLOSE.h5 [--out runs/bench_success]

Per dataset (``robot-rl collect --preset suboptimal --episodes 50``): a state classifier (defaults) and an image
classifier (64x64 corner frames), both trained on episode outcomes from simulator ground truth
(``--labels-from ground_truth``), scored on held-out episodes against their labels and against per-step ground
truth. Then the cost of one online step: env step alone, env step rendering the camera, classifier on the state,
classifier on the frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from robot_rl.data import Dataset
from robot_rl.envs import make_env
from robot_rl.rewards.success import ClassifierSuccess, SuccessConfig, train_success

IMAGE = {"obs": "image", "image_size": 64, "members": 1, "steps": 400, "batch_size": 64, "eval_frames": 8}


def quality(dataset: str, out: Path) -> list[tuple[str, dict]]:
    rows = []
    for name, cfg in (("state", {"obs": "state"}), ("image", IMAGE)):
        m = train_success(dataset, out / name, SuccessConfig(**cfg), labels_from="ground_truth")  # type: ignore[arg-type]
        rows.append((name, m))
        t = m.get("truth", {})
        print(f"{Path(dataset).name:20s} {name:5s} held-out acc {m['valid']['accuracy']:.3f} "
              f"(n={int(m['valid']['count'])}, +{int(m['valid']['positives'])}) | vs truth acc "
              f"{t.get('accuracy', float('nan')):.3f} balanced {t.get('balanced_accuracy', float('nan')):.3f} "
              f"(n={int(t.get('count', 0))}, +{int(t.get('positives', 0))}) | train {m['train_seconds']:.1f} s, "
              f"frames {m['frames_seconds']:.1f} s", flush=True)
    return rows


def online_cost(task: str, out: Path, steps: int = 60) -> None:
    state_sig = ClassifierSuccess(out / "state")
    image_sig = ClassifierSuccess(out / "image")
    cam = image_sig.classifier.camera
    assert cam is not None
    for label, env in (("no camera", make_env(task)), ("camera 64x64", make_env(task, cameras=(cam,),
                                                                                  image_size=(64, 64)))):
        obs, _ = env.reset(seed=0)
        a = torch.zeros(1, env.spec.action.dim)
        t0 = time.perf_counter()
        for _ in range(steps):
            obs = env.step(a).obs
        step_ms = (time.perf_counter() - t0) / steps * 1e3
        print(f"{task} env.step ({label}): {step_ms:.2f} ms", flush=True)
        sig = image_sig if f"image/{cam}" in obs else state_sig
        sig(obs)
        t0 = time.perf_counter()
        for _ in range(steps):
            sig(obs)
        ms = (time.perf_counter() - t0) / steps * 1e3
        print(f"{task} classifier ({sig.classifier.config.obs}, N=1): {ms:.2f} ms", flush=True)
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_success"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for dataset in args.datasets:
        out = args.out / Path(dataset).stem
        quality(dataset, out)
        with Dataset(dataset) as ds:
            task = ds.spec.name
        online_cost(task, out)


if __name__ == "__main__":
    main()
