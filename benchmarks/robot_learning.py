"""Learning on the (simulated) robot: does success rise over a longer actor/learner run over DDS?

Offline (once, kept in ``--work``): ``--offline-episodes`` noisy scripted MetaWorld reach episodes (sparse success
reward, the robot's signal), ``robot-rl train`` IQL for ``--offline-updates``. Online, as separate processes on
loopback DDS: the robot (``robot_rl.envs.sim_robot``), the scripted operator (``robot_rl.envs.sim_operator``:
interventions, 1 s in every 5, during the first ``--operator-until`` seconds only), ``robot-rl learner`` and
``robot-rl actor``, for ``--duration`` seconds; once without the operator, once with it, from the same checkpoint.
Reports the robot's success (ground truth, counted by the robot process) in thirds of each run, and separately over
the episodes nobody intervened in.

    PYTHONPATH=. .venv/bin/python benchmarks/robot_learning.py --duration 240 --operator-until 120
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robot_rl.cli.main import main as cli
from robot_rl.data import DatasetWriter, Episode
from robot_rl.envs import make_env, task_expert
from robot_rl.ros.dds.qos import loopback_config

TASK = "metaworld/reach-v3"


def offline(root: Path, episodes: int, steps: int, updates: int) -> Path:
    env, expert, rng = make_env(TASK, episode_length=steps), task_expert(TASK), np.random.default_rng(0)
    with DatasetWriter(root / "d.h5", env.spec, source="benchmark: noisy scripted reach") as w:
        for e in range(episodes):
            obs, _ = env.reset(seed=1000 + e)
            s_, a_, n_, r_ = [], [], [], []
            for _ in range(steps):
                s = obs["state"][0].numpy()
                a = np.clip(expert(s) + rng.normal(0, (0.1, 0.5, 1.0)[e % 3], 4), -1, 1).astype(np.float32)
                res = env.step(torch.from_numpy(a)[None])
                nxt = res.info["final_obs"] if bool(res.truncated[0]) else res.obs
                s_.append(s), a_.append(a), n_.append(nxt["state"][0].numpy())
                r_.append(float(res.info["success"][0]))
                obs = res.obs
            dones = np.zeros(steps, bool)
            dones[-1] = True
            w.add_episode(Episode(states=np.stack(s_), actions=np.stack(a_), rewards=np.array(r_, np.float32),
                                  next_states=np.stack(n_), terminals=np.zeros(steps, bool), dones=dones,
                                  successes=np.array(r_) > 0))
    env.close()
    assert cli(["train", "--dataset", str(root / "d.h5"), "--steps", str(updates), "--out", str(root / "iql"),
                "--device", "cpu", "--set", "log_every=500", "--eval-episodes", "0"]) == 0
    return root / "iql"


def run(root: Path, checkpoint: Path, args: argparse.Namespace, operator: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "CYCLONEDDS_URI": loopback_config(),
           "MUJOCO_GL": "egl"}
    d = ["--domain", str(args.domain)]
    py = [sys.executable, "-m"]
    logs = open(root / "procs.log", "ab")  # noqa: SIM115
    procs = [subprocess.Popen([*py, "robot_rl.envs.sim_robot", "--task", TASK, "--rate", str(args.rate),
                               "--stats", str(root / "robot.json"), *d], env=env, stdout=logs, stderr=logs)]
    if operator:
        procs.append(subprocess.Popen([*py, "robot_rl.envs.sim_operator", "--task", TASK, "--on", "1", "--off", "4",
                                       "--until", str(args.operator_until), *d], env=env, stdout=logs, stderr=logs))
    procs.append(subprocess.Popen([*py, "robot_rl.cli.main", "learner", "--checkpoint", str(checkpoint), "--out",
                                   str(root / "learner"), "--push-every-s", "2", "--warmup-transitions", "200",
                                   "--updates-per-transition", str(args.utd), "--threads", "1", *d],
                                  env=env, stdout=logs, stderr=logs))
    actor = [*py, "robot_rl.cli.main", "actor", "--spec", str(checkpoint), "--spool", str(root / "spool"),
             "--record", str(root / "robot.h5"), "--rate-hz", str(args.rate), "--episode-steps", str(args.steps),
             "--threads", "1", "--duration", str(args.duration), *d]
    if operator:
        actor += ["--teleop", "twist", "--teleop-axes", "0", "1", "2", "5"]
    started = time.time()
    subprocess.run(actor, env=env, stdout=logs, stderr=logs, check=True)
    for proc in reversed(procs):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    robot = json.loads((root / "robot.json").read_text())
    status = json.loads((root / "learner" / "status.json").read_text())
    episodes = [e for e in robot["episodes"] if e["steps"]]
    learner_eps = status["episodes"]
    intervened = [bool(e["interventions"]) for e in learner_eps][:len(episodes)]
    intervened += [False] * (len(episodes) - len(intervened))
    thirds = np.array_split(np.arange(len(episodes)), 3)
    out = {"operator": operator, "seconds": round(time.time() - started), "episodes": len(episodes),
           "updates": status["updates"],
           "interventions": status["interventions"], "thirds": []}
    for idx in thirds:
        own = [episodes[i]["success"] for i in idx if not intervened[i]]
        out["thirds"].append({"episodes": len(idx), "success": float(np.mean([episodes[i]["success"] for i in idx])),
                              "success_policy_only": float(np.mean(own)) if own else None, "policy_only": len(own)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=240.0)
    ap.add_argument("--operator-until", type=float, default=120.0,
                    help="the operator intervenes (1 s in every 5) during this many seconds of the run")
    ap.add_argument("--work", type=Path, default=None, help="keep the offline run here (reused when present)")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=60, help="steps per episode")
    ap.add_argument("--utd", type=float, default=1.0, help="learner updates per transition")
    ap.add_argument("--offline-episodes", type=int, default=6)
    ap.add_argument("--offline-updates", type=int, default=500)
    ap.add_argument("--domain", type=int, default=91)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checkpoint = work / "iql"
        if not (checkpoint / "checkpoints").exists():
            checkpoint = offline(work, args.offline_episodes, args.steps, args.offline_updates)
        for i, operator in enumerate((False, True)):
            root = Path(tempfile.mkdtemp(dir=tmp))
            args.domain += i
            print(json.dumps(run(root, checkpoint, args, operator)), flush=True)


if __name__ == "__main__":
    main()
