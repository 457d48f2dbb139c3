"""``robot_rl.apps.learner.Learner`` in one process, fed over real DDS by an ``ActorLink``: IQL and RLPD through the
``Agent`` protocol, interventions on both the online and the demonstration side, weights that rebuild the policy,
and a resume that reloads every stored batch."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("cyclonedds", reason="needs the dds extra")

from robot_rl.apps.learner import Learner  # noqa: E402
from robot_rl.apps.learning_config import LearnerConfig  # noqa: E402
from robot_rl.apps.policy_weights import decode_weights  # noqa: E402
from robot_rl.cli.main import main  # noqa: E402
from robot_rl.nn.checkpoint import load_checkpoint  # noqa: E402
from robot_rl.ros.dds.learning import HOLD, HUMAN, POLICY, ActorLink, RowLayout, Spool  # noqa: E402
from robot_rl.ros.dds.participant import Participant  # noqa: E402
from robot_rl.ros.dds.qos import loopback_config  # noqa: E402
from tests.rl.conftest import write_bandit  # noqa: E402

LAYOUT = RowLayout(2, 2)
_domains = itertools.count()


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bandit")
    data = write_bandit(root / "bandit.h5", episodes=40)
    assert main(["train", "--dataset", str(data), "--steps", "20", "--out", str(root / "iql"), "--device", "cpu",
                 "--set", "iql.hidden=[16,16]", "--set", "iql.batch_size=32", "--set", "log_every=20",
                 "--eval-episodes", "0"]) == 0
    return root / "iql"


@pytest.fixture
def domain(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("CYCLONEDDS_URI", loopback_config())
    return 100 + (os.getpid() * 17 + 9 + next(_domains)) % 130


def rows(n: int, source: int, start: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(start)
    return [LAYOUT.pack(rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2), 1.0, False,
                        i == n - 1, source, True, 0) for i in range(n)]


def feed(actor: ActorLink, learner: Learner, batch: list[np.ndarray], until: int, timeout_s: float = 20) -> None:
    for r in batch:
        actor.record(r)
    actor.spool.seal()
    deadline = time.monotonic() + timeout_s
    while learner.trainable < until and time.monotonic() < deadline:
        actor.pump()
        learner.step(wait_s=0.05)
    assert learner.trainable >= until, learner.trainable


@pytest.mark.parametrize("algo", ["iql", "rlpd"])
def test_learner_trains_on_streamed_rows_and_resumes(offline_run: Path, tmp_path: Path, domain: int,
                                                    algo: str) -> None:
    cfg = LearnerConfig(algo=algo, warmup_transitions=8, updates_per_transition=0.5, push_every_s=0.01,
                        offline_ratio=0.5, train_overrides={"rlpd": {"hidden": [16, 16], "batch_size": 32,
                                                                     "critics": 2}})
    learner = Learner(offline_run, tmp_path / "run", cfg, domain, log=lambda s: None)
    p = Participant(domain)
    try:
        actor = ActorLink(p, Spool(tmp_path / "spool", LAYOUT, "a"), batch_rows=8, resend_s=0.5)
        feed(actor, learner, rows(12, POLICY) + rows(6, HUMAN, 1) + rows(4, HOLD, 2), until=18)
        assert (learner.trainable, learner.interventions) == (18, 6)  # held steps are stored, not trained on
        assert (learner.online.size, learner.demos.size) == (18, 6)
        assert learner.updates == 9 and len(learner.episodes) == 3
        batch = learner.sample()
        assert batch["obs"].shape[0] == learner.batch * learner.parts
        learner.step()
        version, updates, policy = decode_weights(_latest(actor, learner))
        assert updates == 9 and policy({"state": torch.zeros(1, 2)}).shape == (1, 2)
        learner.checkpoint()
        learner.push()  # pushed after the last checkpoint (then a kill): a resumed learner's versions still grow
        pushed = learner.version - 1
        assert pushed == version + 1
    finally:
        learner.close()
    again = Learner(offline_run, tmp_path / "run", LearnerConfig(algo=algo), domain, log=lambda s: None)
    try:
        assert (again.updates, again.trainable, again.interventions) == (9, 18, 6)
        assert again.cfg.algo == algo and again.version == pushed + 1
        payload, _ = load_checkpoint(tmp_path / "run")
        assert payload["learner"]["transitions"] == 18
    finally:
        again.close()
        p.close()


def _latest(actor: ActorLink, learner: Learner) -> bytes:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        learner.step(wait_s=0.01)
        msg = actor.pump()
        if msg is not None and int(msg.seq) == learner.version - 1:
            return bytes(msg.data)
    raise AssertionError("no weights")
