"""``robot-rl pipeline --resume``: stages done with unchanged settings are skipped, a failed stage's own error is the
pipeline's one line, and the rerun continues from the stage that failed; changed settings rerun their stage and
every stage after it, never the collected data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from robot_rl.cli import finetune_cmd
from robot_rl.cli.main import main
from robot_rl.cli.pipeline_state import StageLog, stage_keys

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
STAGES = ["collect", "label", "train-reward", "relabel", "train", "finetune"]


def _tiny(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg.update(collect={"episodes": 4, "num_envs": 2}, reward_model={"steps": 20, "hidden": [16, 16]},
               train={"steps": 60, "log_every": 30, "checkpoint_every": 30},
               finetune={"env_steps": 120, "warmup_env_steps": 60, "eval_every": 120}, eval={"episodes": 1})
    cfg["label"].update(pairs=16, segment_length=20)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.name not in {"stages.json", "pipeline.yaml", "summary.json", "report.md",
                                              "pipeline.png"} and not str(p.relative_to(out)).startswith(("iql_",
                                                                                                         "finetune_"))}


def test_stage_keys_change_downstream_of_a_changed_section() -> None:
    cfg = yaml.safe_load(QUICKSTART.read_text())
    before = stage_keys(cfg)
    after = stage_keys({**cfg, "train": {**cfg["train"], "steps": 7}})
    assert [s for s in STAGES if before[s] != after[s]] == ["train", "finetune"]
    seeded = stage_keys({**cfg, "seed": 1})
    assert all(before[s] != seeded[s] for s in STAGES)


@pytest.mark.slow
def test_a_failed_stage_is_one_line_and_resume_continues_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config, out = _tiny(tmp_path), tmp_path / "run"
    real_run = finetune_cmd.run
    monkeypatch.setattr(finetune_cmd, "run", lambda args: 2)  # the stage's command fails (its own line printed)
    assert main(["pipeline", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "robot-rl pipeline: error: stage finetune failed (exit status 2" in err and "Traceback" not in err
    assert "--resume" in err
    log = StageLog(out)
    assert [s for s in STAGES if log.is_done(s, stage_keys(yaml.safe_load((out / "pipeline.yaml").read_text()))[s])] \
        == STAGES[:-1]
    made = _mtimes(out)

    monkeypatch.setattr(finetune_cmd, "run", real_run)
    assert main(["pipeline", "--resume", "--out", str(out)]) == 0  # the config comes from the run's pipeline.yaml
    err = capsys.readouterr().err
    for stage in STAGES[:-1]:
        assert f"{stage}: done earlier with these settings, skipped" in err
    assert "finetune (continued)" in err
    after = _mtimes(out)
    assert {k: v for k, v in after.items() if k in made and not k.startswith("finetune/")} == \
        {k: v for k, v in made.items() if not k.startswith("finetune/")}  # nothing before finetune was touched
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs labeled"] == 16  # facts of skipped stages reach the report
    assert 0 <= summary["after online fine-tuning (learned reward) success"] <= 1

    # a changed train setting reruns train and finetune only, from scratch
    assert main(["pipeline", "--resume", "--out", str(out), "--set", "train.steps=30"]) == 0
    err = capsys.readouterr().err
    assert "relabel: done earlier with these settings, skipped" in err and "train: done earlier" not in err
    assert yaml.safe_load((out / "iql" / "config.yaml").read_text())["steps"] == 30
    assert _mtimes(out)[Path(out / "drawer-open-v3.h5").name] == made["drawer-open-v3.h5"]

    # changed collect settings would not match the data: refused, nothing touched
    assert main(["pipeline", "--resume", "--out", str(out), "--set", "collect.episodes=5"]) == 2
    assert "collect settings differ" in capsys.readouterr().err
    assert main(["pipeline", "--config", str(config), "--out", str(out)]) == 2  # without --resume: refused
    assert "pass --resume to continue it" in capsys.readouterr().err


def test_resume_refuses_a_folder_the_pipeline_did_not_make(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "pipeline.yaml").write_text(QUICKSTART.read_text())
    (other / "keep.txt").write_text("mine")
    assert main(["pipeline", "--resume", "--out", str(other)]) == 2
    assert "was not made by robot-rl pipeline" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"
    assert main(["pipeline", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no pipeline.yaml" in capsys.readouterr().err


def test_a_torn_stage_record_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "stages.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the pipeline's stage record"):
        StageLog(tmp_path)
