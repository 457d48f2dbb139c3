"""The one error handler of ``robot-rl`` (cli/main.py, cli/errors.py): one line and exit status 2 for every failure,
the traceback only with ``--debug``, Ctrl-C 130; the output-path check; device names; ``train --resume`` refusing a
config other than the run's."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest
import torch
import yaml

from robot_rl.cli import errors
from robot_rl.cli import main as main_module
from robot_rl.cli.errors import describe
from robot_rl.cli.main import main
from robot_rl.cli.outputs import OutputPathError, check_output
from robot_rl.cli.progress import Progress
from robot_rl.nn.device import resolve_device
from tests.rewards.conftest import write_reach


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def _failing(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def run(args: argparse.Namespace) -> int:
        raise exc
    monkeypatch.setattr(main_module.COMMANDS["compare-rewards"], "run", run)


def test_an_unexpected_exception_is_one_line_with_the_debug_hint(monkeypatch, capsys) -> None:
    _failing(monkeypatch, RuntimeError("boom\nsecond line"))
    assert main(["compare-rewards", "x.h5"]) == 2
    err = capsys.readouterr().err
    assert _lines(err) == ["robot-rl compare-rewards: error: RuntimeError: boom second line "
                           "(run with --debug for the traceback)"]


@pytest.mark.parametrize("argv", [["--debug", "compare-rewards", "x.h5"], ["compare-rewards", "x.h5", "--debug"]])
def test_debug_adds_the_traceback(monkeypatch, capsys, argv: list[str]) -> None:
    _failing(monkeypatch, RuntimeError("boom"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert _lines(err)[-1] == "robot-rl compare-rewards: error: RuntimeError: boom"


def test_ctrl_c_is_130(monkeypatch, capsys) -> None:
    _failing(monkeypatch, KeyboardInterrupt())
    assert main(["compare-rewards", "x.h5"]) == 130
    assert _lines(capsys.readouterr().err) == ["robot-rl compare-rewards: interrupted"]


@pytest.mark.parametrize(("argv", "start"), [
    (["train", "--out", "x", "--bogus"], "robot-rl train: error: unrecognized arguments: --bogus"),
    (["train", "--steps", "abc"], "robot-rl train: error: argument --steps: invalid int value: 'abc'"),
    ([], "robot-rl: error: the following arguments are required: COMMAND"),
    (["calibrate", "intrinsics"], "robot-rl calibrate intrinsics: error: the following arguments are required"),
])
def test_argparse_refusals_are_one_line_too(capsys, argv: list[str], start: str) -> None:
    assert main(argv) == 2
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(start) and lines[0].endswith("--help)"), lines


def test_os_errors_name_the_path_and_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as e:
        (blocker / "out").mkdir(parents=True)
    assert describe(e.value) == (f"{blocker / 'out'}: a part of the path is a file, not a folder", False)
    exists = FileExistsError(errno.EEXIST, "File exists", str(blocker))  # Path.mkdir(exist_ok=True) on a file
    assert describe(exists) == (f"{blocker}: is a file, not a folder", False)
    with pytest.raises(OSError) as e:
        open("/proc/robot-rl-nowhere/x", "w")
    assert describe(e.value)[0] == "/proc/robot-rl-nowhere/x: no such file or folder"
    assert describe(FileExistsError("run exists; pass --resume"))[0] == "run exists; pass --resume"
    h5 = OSError("Unable to synchronously create file (unable to open file: name = '/data/x.h5', errno = 28, "
                 "error message = 'No space left on device')")
    assert describe(h5)[0].startswith("/data/x.h5: disk full (no space left on device)")


def test_a_full_disk_is_named_for_a_real_write_error(monkeypatch, capsys, tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does; the error does not name a path, the command's
    output does."""
    def write_to_full_disk(args: argparse.Namespace) -> int:
        with open("/dev/full", "wb", buffering=0) as f:
            f.write(b"x" * 4096)
        return 0
    monkeypatch.setattr(main_module.COMMANDS["compare-rewards"], "run", write_to_full_disk)
    out = tmp_path / "out"
    assert main(["compare-rewards", "x.h5", "--out", str(out)]) == 2
    assert _lines(capsys.readouterr().err) == [
        f"robot-rl compare-rewards: error: disk full (no space left on device) while writing --out {out}; free some "
        "space and rerun"]
    assert errors.disk_full(RuntimeError("database or disk is full")) == ""


def test_the_output_check(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match=f"--out {blocker}/a/b.h5: cannot write there: {blocker} is a file"):
        check_output(blocker / "a" / "b.h5")
    with pytest.raises(OutputPathError, match="/proc/robot-rl/x.h5: cannot write there: /proc is not writable"):
        check_output("/proc/robot-rl/x.h5")
    with pytest.raises(OutputPathError, match="it is a folder"):
        check_output(tmp_path, "--out", "file")
    with pytest.raises(OutputPathError, match="it is a file, not a folder"):
        check_output(blocker, "--out", "folder")
    deep = tmp_path / "new" / "deeper" / "run"
    assert check_output(deep, "--out", "folder") == deep
    assert check_output(tmp_path / "d.h5") == tmp_path / "d.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the check creates nothing


def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device 'foo' is unknown; expected auto"):
        resolve_device("foo")
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    with pytest.raises(ValueError, match=f"device '{missing}'"):
        resolve_device(missing)


def test_a_progress_bar_ended_by_an_error_prints_nothing(capsys) -> None:
    from rich.console import Console

    with pytest.raises(ValueError), Progress(console=Console(stderr=True)) as progress:
        progress.add_task("work", total=3)
        raise ValueError("boom")
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    data = write_reach(root / "reach.h5", episodes=3, length=10)
    run = root / "run"
    assert main(["train", "--dataset", str(data), "--out", str(run), "--steps", "2", "--eval-episodes", "0",
                 "--device", "cpu", "--set", "iql.hidden=[8]", "--set", "log_every=1"]) == 0
    return data, run


@pytest.mark.parametrize(("extra", "needle"), [
    (["--algo", "bc"], "--resume: --algo bc differs from the run's iql"),
    (["--dataset", "{other}"], "--resume: --dataset {other} differs from the run's {data}"),
    (["--set", "iql.expectile=0.9"], "--resume: iql.expectile 0.9 differs from the run's 0.7"),
])
def test_train_resume_refuses_another_config(tiny_run: tuple[Path, Path], tmp_path: Path, capsys,
                                             extra: list[str], needle: str) -> None:
    data, run = tiny_run
    other = tmp_path / "other.h5"
    write_reach(other, episodes=3, length=10)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    capsys.readouterr()
    fill = {"other": str(other), "data": str(data)}
    assert main(["train", "--out", str(run), "--resume", "--steps", "4", "--eval-episodes", "0",
                 *[a.format(**fill) for a in extra]]) == 2
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and needle.format(**fill) in lines[0] and str(run / "config.yaml") in lines[0], lines
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing trained


def test_train_resume_takes_more_steps_and_the_same_values(tiny_run: tuple[Path, Path], capsys) -> None:
    data, run = tiny_run
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--eval-episodes", "0", "--algo", "iql",
                 "--dataset", str(data), "--device", "cpu"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 3
    assert main(["train", "--out", str(run.parent / "none"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
