"""``robot-rl pipeline`` checks its whole config before touching the disk, and ``--overwrite`` deletes only a folder
the pipeline made (one with its marker file). Every case here stops at validation: no rollouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from robot_rl.cli import pipeline_cmd
from robot_rl.cli.main import main
from robot_rl.cli.pipeline_cmd import MARKER, prepare_out
from robot_rl.cli.pipeline_config import check_config

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def _config(tmp_path: Path, **changes: object) -> Path:
    cfg = yaml.safe_load(QUICKSTART.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            cfg[section] = {**(cfg.get(section) or {}), field: value}
        else:
            cfg[section] = value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _no_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: object) -> int:
        raise AssertionError("the pipeline ran although its config is bad")
    monkeypatch.setattr(pipeline_cmd.Pipeline, "run", fail)


def test_the_quickstart_config_passes_the_checks() -> None:
    check_config(yaml.safe_load(QUICKSTART.read_text()))


@pytest.mark.parametrize(("changes", "message"), [
    ({"label__pairz": 30}, "unknown key label.pairz (did you mean 'pairs'?)"),
    ({"finetun": {"env_steps": 10}}, "unknown key finetun (did you mean 'finetune'?)"),
    ({"collect__episode": 3}, "unknown key collect.episode (did you mean 'episodes'?)"),
    ({"eval__episdes": 3}, "unknown key eval.episdes (did you mean 'episodes'?)"),
    ({"reward_model__step": 3}, "unknown key reward_model.step (did you mean 'steps'?)"),
    ({"train__stepz": 3}, "unknown key train.stepz (did you mean 'steps'?)"),
    ({"train__iql": {"expectle": 0.9}}, "unknown key train.iql.expectle (did you mean 'expectile'?)"),
    ({"finetune__env_step": 3}, "unknown key finetune.env_step (did you mean 'env_steps'?)"),
    ({"finetune__capacity": 3}, "finetune.capacity cannot be set here"),
    ({"train__dataset": "x.h5"}, "train.dataset cannot be set here"),
    ({"label__teacher": {"mistak": 0.1}}, "unknown key label.teacher.mistak (did you mean 'mistake'?)"),
    ({"train__steps": "5k"}, "train.steps must be an integer >= 1, got '5k'"),
    ({"reward_model__hidden": "abc"}, "reward_model.hidden must be a list"),
    ({"reward_model__members": 0}, "members must be >= 1"),
    ({"finetune__offline_ratio": 2.0}, "offline_ratio must be in [0, 1]"),
    ({"train__algo": "iqll"}, "unknown algo 'iqll'"),
    ({"task": "metaworld/drawer-opn-v3"}, "task 'metaworld/drawer-opn-v3' is unknown (did you mean "
                                          "'metaworld/drawer-open-v3'?)"),
    ({"label__labeler": "vlmm"}, "label.labeler 'vlmm' is unknown (did you mean 'vlm'?)"),
])
def test_a_bad_config_fails_in_one_line_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str],
                                                             changes: dict[str, object], message: str) -> None:
    _no_collect(monkeypatch)
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(_config(tmp_path, **changes)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # nothing written


def test_a_misspelled_set_override_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _no_collect(monkeypatch)
    assert main(["pipeline", "--out", str(tmp_path / "run"), "--set", "label.pairz=30"]) == 2
    assert "label.pairz (did you mean 'pairs'?)" in capsys.readouterr().err


def test_overwrite_of_a_folder_with_other_files_is_refused_and_keeps_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _no_collect(monkeypatch)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    # a bad config: fails at the check, before the folder is looked at
    assert main(["pipeline", "--config", str(_config(tmp_path, task="metaworld/nope-v3")), "--out", str(out),
                 "--overwrite"]) == 2
    assert (out / "thesis.tex").read_text() == "years of work"
    capsys.readouterr()
    # a good config: the folder was not made by the pipeline, so --overwrite refuses it
    assert main(["pipeline", "--config", str(QUICKSTART), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and MARKER in err and len(err.strip().splitlines()) == 1, err
    assert (out / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_a_folder_the_pipeline_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Path] = []
    monkeypatch.setattr(pipeline_cmd.Pipeline, "run", lambda self: ran.append(self.out) or 0)
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(QUICKSTART), "--out", str(out)]) == 0
    assert (out / MARKER).is_file() and (out / "pipeline.yaml").is_file()
    (out / "old_result.json").write_text("{}")
    assert main(["pipeline", "--config", str(QUICKSTART), "--out", str(out)]) == 2  # never silently
    assert (out / "old_result.json").exists()
    assert main(["pipeline", "--config", str(QUICKSTART), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "old_result.json").exists() and (out / MARKER).is_file()
    assert ran == [out, out]


def test_prepare_out_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        prepare_out(path, overwrite=True)
    assert path.read_text() == "x"
