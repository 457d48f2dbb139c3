"""Relabel and collect throughput on a local Ray with 1 and 2 workers, against the single-process commands.

    python benchmarks/scale_out.py [--episodes 32] [--collect-episodes 16] [--episode-length 100] [--collect-length 200]

Relabel: a MetaWorld drawer-open dataset (``--episodes``, ``--episode-length`` steps), the reward code below
(CPU-bound: a 256-wide 3-layer MLP on every state, ~tens of ms an episode) through ``relabel`` and
``relabel_on_ray(workers=W)``. Episodes/s = episodes / (first worker up -> all computed): the Ray start itself
(~15 s here) is left out, the sandbox start of each worker is in; "after first results" counts only the
episodes that came in after the first ones (the workers' start-up left out).
Collect: ``collect --num-envs 2`` single-process, and ``RayCollector(workers=W)`` (W actors holding the 2 slots),
steps/s = steps written / seconds of ``collect`` (actors already built). Both check that the results equal the
single-process ones. Prints a markdown table and ``uptime``'s load (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robot_rl.data import Dataset, DatasetWriter  # noqa: E402
from robot_rl.data.behaviours import resolve_preset  # noqa: E402
from robot_rl.data.collect import collect  # noqa: E402
from robot_rl.envs import make_env  # noqa: E402
from robot_rl.envs.metaworld_env import metaworld_expert  # noqa: E402
from robot_rl.rewards.relabel import make_rewarder, relabel  # noqa: E402
from robot_rl.scale.collect import CollectJob, RayCollector  # noqa: E402
from robot_rl.scale.relabel import SourceSpec, relabel_on_ray  # noqa: E402

TASK = "metaworld/drawer-open-v3"
REWARD = """
import torch

torch.manual_seed(0)
W = [torch.randn(39, 256) / 6, torch.randn(256, 256) / 16, torch.randn(256, 1) / 16]

def compute_reward(obs, action):
    h = obs["state"]
    for _ in range(400):  # CPU-bound work, as a reward model's forward pass
        x = torch.tanh(h @ W[0])
        x = torch.tanh(x @ W[1])
        r = (x @ W[2])[:, 0]
    return r, {}
"""


def write_dataset(path: Path, episodes: int, length: int) -> None:
    env = make_env(TASK, num_envs=2, episode_length=length)
    try:
        with DatasetWriter(path, env.spec, source="benchmark") as w:
            collect(env, w, episodes, resolve_preset("suboptimal"), expert=metaworld_expert("drawer-open-v3"))
    finally:
        env.close()


def labels(path: Path) -> dict[str, np.ndarray]:
    with Dataset(path) as ds:
        return {n: ds.load_episode(n).reward_labels["code"][0] for n in ds.episode_names}


def bench_relabel(root: Path, data: Path, code: Path, workers: int | None
                  ) -> tuple[float, float, dict[str, np.ndarray]]:
    """(episodes/s of the compute phase, episodes/s after the first results came in, the labels)."""
    path = root / f"relabel-{workers}.h5"
    shutil.copy(data, path)
    marks: dict[str, float] = {}
    seen: list[tuple[float, int]] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "compute" and "start" not in marks:
            marks["start"] = time.perf_counter()
        if phase == "compute" and done > 0:
            seen.append((time.perf_counter(), done))
        if phase == "write" and "end" not in marks:
            marks["end"] = time.perf_counter()

    with Dataset(path) as ds:
        rewarder = make_rewarder(f"code:{code}", ds)
        n = ds.num_episodes
    try:
        if workers is None:
            relabel(str(path), rewarder, progress=progress)
        else:
            def up(_pids: list[int]) -> None:
                marks["start"] = time.perf_counter()

            relabel_on_ray(str(path), rewarder, SourceSpec(f"code:{code}"), "local", workers=workers,
                           progress=progress, on_workers=up)
    finally:
        rewarder.close()
    (t0, d0), (t1, d1) = seen[0], seen[-1]
    return n / (marks["end"] - marks["start"]), (d1 - d0) / (t1 - t0), labels(path)


def bench_collect(root: Path, episodes: int, length: int, workers: int | None) -> tuple[float, list[np.ndarray]]:
    """(steps/s, the episodes' actions)."""
    path = root / f"collect-{workers}.h5"
    preset = resolve_preset("suboptimal")
    if workers is None:
        env = make_env(TASK, num_envs=2, episode_length=length)
        spec = env.spec
    else:
        env = RayCollector("local", CollectJob(TASK, "suboptimal", 0, None, length), 2, workers)
        spec = env.spec
    try:
        with DatasetWriter(path, spec, source="benchmark") as w:
            start = time.perf_counter()
            if workers is None:
                collect(env, w, episodes, preset, expert=metaworld_expert("drawer-open-v3"))
            else:
                env.collect(w, episodes)
            seconds = time.perf_counter() - start
    finally:
        env.close()
    with Dataset(path) as ds:
        acts = [ds.load_episode(n).actions for n in ds.episode_names]
    return episodes * length / seconds, acts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--collect-episodes", type=int, default=16)
    ap.add_argument("--episode-length", type=int, default=100)
    ap.add_argument("--collect-length", type=int, default=200)
    ap.add_argument("--only", choices=("relabel", "collect"), default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scale_out"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray, loopback only
    try:
        rows: list[tuple[str, str, float, str, bool]] = []
        if args.only != "collect":
            relabel_rows(root, args.episodes, args.episode_length, rows)
        if args.only != "relabel":
            collect_rows(root, args.collect_episodes, args.collect_length, rows)
        print(f"\n{args.episodes} relabel episodes, {args.collect_episodes} collect episodes, "
              f"{args.episode_length} / {args.collect_length} steps each, {os.cpu_count()} CPUs\n")
        print("| work | how | throughput | vs 1 Ray worker | same result as single process |")
        print("|---|---|---|---|---|")
        for work, how, rate, unit, same in rows:
            one = next(r[2] for r in rows if r[0] == work and r[1] == "Ray, 1 worker")  # noqa: B023
            print(f"| {work} | {how} | {rate:.2f} {unit} | {rate / one:.2f}x | {'yes' if same else 'NO'} |")
        print("\nload: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def relabel_rows(root: Path, episodes: int, length: int, rows: list[tuple[str, str, float, str, bool]]) -> None:
    data = root / "data.h5"
    write_dataset(data, episodes, length)
    code = root / "reward.py"
    code.write_text(REWARD)
    base, steady, want = bench_relabel(root, data, code, None)
    rows.append(("relabel", "single process", base, "episodes/s", True))
    rows.append(("relabel (after first results)", "single process", steady, "episodes/s", True))
    for w in (1, 2):
        rate, steady, got = bench_relabel(root, data, code, w)
        same = list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)
        rows.append(("relabel", f"Ray, {w} worker{'s' * (w > 1)}", rate, "episodes/s", same))
        rows.append(("relabel (after first results)", f"Ray, {w} worker{'s' * (w > 1)}", steady, "episodes/s",
                     same))


def collect_rows(root: Path, episodes: int, length: int, rows: list[tuple[str, str, float, str, bool]]) -> None:
    cbase, cwant = bench_collect(root, episodes, length, None)
    rows.append(("collect", "single process (2 env slots)", cbase, "steps/s", True))
    for w in (1, 2):
        rate, got = bench_collect(root, episodes, length, w)
        same = len(got) == len(cwant) and all(np.array_equal(a, b) for a, b in zip(got, cwant, strict=True))
        rows.append(("collect", f"Ray, {w} worker{'s' * (w > 1)}", rate, "steps/s", same))


if __name__ == "__main__":
    main()
