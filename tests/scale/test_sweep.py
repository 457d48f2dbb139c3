"""``robot-rl sweep``: a grid of train jobs as Ray tasks on a two-node loopback cluster gives the same numbers as the
same jobs one after another; a rerun skips finished jobs and redoes an interrupted one; bad configs are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from robot_rl.cli.main import main
from robot_rl.scale.sweep import read_sweep
from tests.rewards.conftest import write_reach

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, dataset: Path) -> Path:
    cfg = {"command": "train", "out": str(tmp_path / "unused"),
           "args": ["--dataset", str(dataset), "--steps", "40", "--device", "cpu", "--eval-episodes", "0"],
           "set": {"log_every": 20, "checkpoint_every": 40, "iql.batch_size": 64},
           "grid": {"seed": [0, 1]}, "metrics": ["critic_loss", "actor_loss"]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv") as f:
        return {r["job"]: r for r in csv.DictReader(f)}


def _losses(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "loss" in k} for r in rows]


def test_sweep_on_ray_equals_sequential_and_resumes(tmp_path, ray_cluster, capsys):
    dataset = write_reach(tmp_path / "reach.h5", episodes=6, length=20)
    config = _config(tmp_path, dataset)
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "ray"),
                 "--ray-address", ray_cluster.address]) == 0
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "seq")]) == 0
    ray_rows, seq_rows = _rows(tmp_path / "ray"), _rows(tmp_path / "seq")
    assert list(ray_rows) == ["seed=0", "seed=1"] and list(seq_rows) == list(ray_rows)
    for job in ray_rows:
        assert ray_rows[job]["status"] == seq_rows[job]["status"] == "done"
        assert ray_rows[job]["critic_loss"] == seq_rows[job]["critic_loss"] != "nan"
        assert _losses(tmp_path / "ray" / job) == _losses(tmp_path / "seq" / job)
    assert ray_rows["seed=0"]["critic_loss"] != ray_rows["seed=1"]["critic_loss"]  # the seed reached the job
    md = (tmp_path / "ray" / "results.md").read_text()
    assert "| all | 2 |" in md and "| seed=1 | done |" in md
    assert (tmp_path / "ray" / "results.png").stat().st_size > 5_000

    # Resume: a finished job is skipped; a job killed half-way (started, no record) runs again from scratch.
    state = tmp_path / "seq" / ".sweep"
    (state / "seed=1.json").unlink()
    (tmp_path / "seq" / "seed=1" / "metrics.jsonl").write_text('{"step": 20, "critic_loss": 1e9}\n{"ste')
    capsys.readouterr()
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "seq")]) == 0
    err = capsys.readouterr().err
    assert "seed=0: skipped" in err and "seed=1: done" in err
    again = _rows(tmp_path / "seq")
    assert again["seed=0"]["status"] == "skipped" and again["seed=1"]["status"] == "done"
    assert [again[j]["critic_loss"] for j in again] == [seq_rows[j]["critic_loss"] for j in seq_rows]


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, capsys):
    dataset = write_reach(tmp_path / "reach.h5", episodes=4, length=20)
    config = _config(tmp_path, dataset)
    raw = yaml.safe_load(config.read_text())
    raw["grid"] = {"seed": [0], "algo": ["iql", "no-such-algo"]}
    raw["args"][raw["args"].index("40")] = "2"
    config.write_text(yaml.safe_dump(raw))
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "algo=iql__seed=0: done" in err and "algo=no-such-algo__seed=0: failed: exit status 2" in err
    assert "1 job(s) failed" in err


@pytest.mark.parametrize(("edit", "message"), [
    ({"grid": {"seed": 3}}, "grid.seed: must be a non-empty list"),
    ({"command": "collect"}, "command: 'collect' is not one of train, pipeline"),
    ({"args": ["--out", "x"]}, "args: no --out"),
    ({"gird": {}}, "unknown key(s) gird"),
    ({"resources": {"num_cpus": 0}}, "resources.num_cpus: must be an integer >= 1"),
])
def test_bad_sweep_configs_are_one_line_naming_the_key(tmp_path, capsys, edit, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"command": "train", "args": [], "grid": {"seed": [0]}, **edit}))
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and str(path) in err


def test_the_example_config_expands_to_tasks_seeds_and_reward_sources() -> None:
    cfg = read_sweep(Path(__file__).resolve().parents[2] / "configs" / "sweep.example.yaml")
    assert cfg.command == "pipeline" and len(cfg.jobs) == 2 * 3 * 2
    assert cfg.jobs[0].name == "task=metaworld-drawer-open-v3__seed=0__mistake=0.0"
    argv = list(cfg.jobs[-1].argv)
    assert argv[:2] == ["--config", "configs/quickstart.yaml"] and "--out" in argv
    assert {"eval.episodes=10", "task=metaworld/drawer-close-v3", "seed=2", "label.teacher.mistake=0.2"} <= set(argv)
