"""Learning on the robot end to end, as separate processes on loopback DDS: a simulated robot
(``robot_rl.envs.sim_robot``: MetaWorld reach behind the DDS participant), a scripted teleop operator
(``robot_rl.envs.sim_operator``), ``robot-rl actor`` and ``robot-rl learner``. The actor starts before any learner (it
holds), the learner's weights reach it, the learner and then the actor are killed with SIGKILL and restarted, and
at the end every step the robot executed is in the learner's store exactly once (but the one in flight when the actor
died), the interventions are recorded in the actor's HDF5 and counted the same by the learner and by ``inspect``."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs the dds extra")

from robot_rl.cli.main import main  # noqa: E402
from robot_rl.data.reader import Dataset  # noqa: E402
from robot_rl.nn.checkpoint import load_checkpoint  # noqa: E402
from robot_rl.ros.dds.learning import HOLD, HUMAN, RowLayout  # noqa: E402
from tests.apps.procs import STEPS, TASK, Procs, read_json, wait_for  # noqa: E402


def test_actor_and_learner_over_dds_survive_kills_and_record_interventions(offline_run: Path, tmp_path: Path
                                                                           ) -> None:
    domain = 100 + (os.getpid() * 13 + 3) % 130
    procs = Procs(tmp_path, domain)
    run, spool, record = tmp_path / "learner", tmp_path / "spool", tmp_path / "robot.h5"
    robot_stats, actor_status = tmp_path / "robot.json", tmp_path / "actor.json"
    actor_args = ["-m", "robot_rl.cli.main", "actor", "--spec", str(offline_run), "--spool", str(spool),
                  "--record", str(record), "--rate", "20", "--episode-steps", str(STEPS), "--batch-rows", "16",
                  "--resend-s", "1", "--status", str(actor_status), "--threads", "1",
                  "--teleop", "twist", "--teleop-axes", "0", "1", "2", "5"]
    learner_args = ["-m", "robot_rl.cli.main", "learner", "--checkpoint", str(offline_run), "--out", str(run),
                    "--push-every-s", "1", "--warmup-transitions", "16", "--updates-per-transition", "0.5",
                    "--checkpoint-every-s", "2", "--threads", "1"]
    try:
        procs.start("robot", ["-m", "robot_rl.envs.sim_robot", "--task", TASK, "--rate", "20", "--camera", "corner",
                              "--image-period", "3", "--stats", str(robot_stats)])
        procs.start("operator", ["-m", "robot_rl.envs.sim_operator", "--task", TASK, "--on", "0.8", "--off", "2.5",
                                 "--delay", "1"])
        procs.start("actor", actor_args)
        # no learner yet: the actor holds (zero ee_delta command, through the gate) and records the held steps
        wait_for("the actor's first episode", lambda: len(read_json(actor_status).get("episodes", [])) >= 1, 60, procs)
        first = read_json(actor_status)["episodes"][0]
        assert first["holds"] > 0 and first["weights_version"] == -1
        procs.start("learner", learner_args)
        wait_for("weights v2 at the actor", lambda: read_json(actor_status).get("weights_version", -1) >= 2, 60, procs)
        wait_for("a learner checkpoint", lambda: read_json(run / "status.json").get("updates", 0) > 0, 30, procs)
        # kill -9 the learner: the actor keeps acting on the last weights, its batches wait on its disk
        assert procs.stop("learner", signal.SIGKILL) == -signal.SIGKILL
        before = read_json(run / "status.json")
        steps = read_json(actor_status)["steps"]
        wait_for("the actor acting on past the kill", lambda: read_json(actor_status)["steps"] >= steps + 1, 30, procs)
        version = read_json(actor_status)["weights_version"]  # read after weights already in flight have landed
        steps = read_json(actor_status)["steps"]
        wait_for("the actor acting on without a learner", lambda: read_json(actor_status)["steps"] >= steps + STEPS,
                 30, procs)
        alone = read_json(actor_status)
        assert alone["weights_version"] == version and alone["episodes"][-1]["holds"] == 0
        assert alone["pending"] > 0  # spooled, not acked: nobody to ack them
        procs.start("learner", learner_args)
        wait_for("the learner resumed", lambda: "learner: resumed at update" in procs.log("learner"), 60, procs)
        wait_for("new weights after the restart",
                 lambda: read_json(actor_status).get("weights_version", -1) > version, 60, procs)
        # kill -9 the actor mid-episode; a new one picks up its spool (and its last weights) and goes on
        assert procs.stop("actor", signal.SIGKILL) == -signal.SIGKILL
        actor_status.unlink()
        procs.start("actor", actor_args)
        wait_for("the restarted actor's episode", lambda: len(read_json(actor_status).get("episodes", [])) >= 2,
                 60, procs)
        assert read_json(actor_status)["episodes"][0]["holds"] == 0  # acted on the spooled weights at once
        assert procs.stop("actor") == 0  # SIGTERM: finishes the step, drains its spool to the learner
        time.sleep(1.0)
        assert procs.stop("learner") == 0
        assert procs.stop("robot") == 0
        procs.stop("operator")
    finally:
        procs.close()
    logs = procs.logs()
    # nothing lost, nothing twice: every command the robot executed is one stored transition, but at most the one in
    # flight when the actor was killed (its outcome was never observed)
    robot = json.loads(robot_stats.read_text())
    layout = RowLayout(39, 4)
    rows = np.concatenate([layout.rows(p.read_bytes(), str(p)) for p in (run / "received").glob("*.rows")])
    u = layout.unpack(rows)
    commanded = int((u["commanded"] > 0.5).sum())
    assert robot["commands"] - 1 <= commanded <= robot["commands"], logs
    assert not list(spool.glob("*.rows")) and not list(spool.glob("*.open")), logs
    assert int((np.rint(u["source"]) == HOLD).sum()) >= first["holds"]
    # the learner's updates reached the actor: episodes ran on increasing weights versions
    with Dataset(record) as ds:
        episodes = [ds.load_episode(n) for n in ds.episode_names]
        counts = ds.intervention_counts()
    versions = [int(ep.attrs["weights_version_max"]) for ep in episodes]
    assert versions[0] == -1 and max(versions) >= 3 and versions == sorted(versions), versions
    # interventions: recorded per step in the HDF5, the same number the learner got and reports
    human = int((np.rint(u["source"]) == HUMAN).sum())
    status = json.loads((run / "status.json").read_text())
    assert counts is not None and sum(counts.values()) > 0, logs
    assert status["interventions"] == human >= sum(counts.values())  # the killed actor's episode is not in the HDF5
    assert "| interventions |" in (run / "report.md").read_text()
    assert main(["inspect", str(record), "--no-plot"]) == 0
    # the learner resumed from its checkpoint, not from scratch
    payload, _ = load_checkpoint(run)
    assert payload["learner"]["updates"] >= before["updates"] > 0
    success = [bool(e["success"]) for e in robot["episodes"] if e["steps"]]
    print(f"robot episodes {len(success)}, success by episode: {''.join('x' if s else '.' for s in success)}; "
          f"interventions {human}, transitions {len(rows)}, updates {payload['learner']['updates']}")
