"""Every subcommand of ``robot-rl`` against each class of bad input: a value of the wrong type (``--set`` where the
command has it, else a typed flag), a value out of range, an output it cannot write (its folder would be under a
regular file, or in /proc: refused for root too), a missing input file, a corrupt input file, a device this machine
lacks, and a full disk (a real, small tmpfs; root only). Each must end in exit status 2 with one line on stderr,
``robot-rl CMD: error: ...`` naming what and where, and no traceback (docs/cli_errors.md counts these cases).

Cases run on tiny fixtures and stop at validation or the first read, well under a second or two each."""

from __future__ import annotations

import gc
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from robot_rl.cli.main import COMMANDS, main
from robot_rl.data import Dataset
from tests.rewards.conftest import write_reach

CLASSES = ("bad-type", "bad-value", "unwritable-output", "missing-input", "corrupt-input")
"""Classes of bad input every command is swept with (where the command has such an input or output)."""
RS = ["--llm-url", "http://127.0.0.1:9/v1", "--model", "m", "--trainer", "none", "--labels", "{out}/l.sqlite"]
INTRINSICS = ["calibrate", "intrinsics", "--board", "chessboard:9x6:0.025"]

CASES: list[tuple[str, str, list[str], str]] = [
    # (command, class, argv with {placeholders}, text the error line must hold)
    ("collect", "bad-type", ["collect", "--out", "{out}/d.h5", "--noise", "abc"], "--noise: invalid float value"),
    ("collect", "bad-value", ["collect", "--out", "{out}/d.h5", "--noise", "nan"], "--noise must be a finite"),
    ("collect", "bad-value", ["collect", "--out", "{out}/d.h5", "--noise", "inf"], "--noise must be a finite"),
    ("collect", "bad-value", ["collect", "--out", "{out}/d.h5", "--noise", "-1"], "got -1.0"),
    ("collect", "unwritable-output", ["collect", "--out", "{blocked}/d.h5"], "{blocked}/d.h5: cannot write there"),
    ("collect", "unwritable-output", ["collect", "--out", "/proc/robot-rl/d.h5"], "/proc/robot-rl/d.h5"),
    ("collect", "corrupt-input", ["collect", "--resume", "--out", "{corrupt_h5}"], "not an HDF5 file"),
    ("inspect", "bad-type", ["inspect", "{reach}", "--frames", "abc"], "--frames: invalid int value"),
    ("inspect", "unwritable-output", ["inspect", "{reach}", "--png", "{blocked}/x.png"], "is a file, not a folder"),
    ("inspect", "missing-input", ["inspect", "{missing}"], "{missing}: no such file"),
    ("inspect", "corrupt-input", ["inspect", "{corrupt_h5}"], "{corrupt_h5}: not an HDF5 file"),
    ("label", "bad-type", ["label", "{reach}", "--pairs", "abc"], "--pairs: invalid int value"),
    ("label", "bad-value", ["label", "{reach}", "--segment-length", "0"], "--segment-length must be >= 1"),
    ("label", "unwritable-output", ["label", "{reach}", "--pairs", "2", "--segment-length", "5", "--store",
                                    "{blocked}/l.sqlite"], "{blocked}/l.sqlite"),
    ("label", "missing-input", ["label", "{missing}"], "{missing}: no such file"),
    ("label", "corrupt-input", ["label", "{corrupt_h5}"], "{corrupt_h5}: not an HDF5 file"),
    ("train-reward", "bad-type", ["train-reward", "{reach}", "--out", "{out}/r", "--set", "lr=abc"],
     "lr must be a number > 0, got 'abc'"),
    ("train-reward", "bad-type", ["train-reward", "{reach}", "--out", "{out}/r", "--set", "hidden=abc"],
     "hidden must be a list of integers >= 1, got 'abc'"),
    ("train-reward", "bad-value", ["train-reward", "{reach}", "--out", "{out}/r", "--set", "valid_fraction=1"],
     "valid_fraction must be in [0, 1), got 1"),
    ("train-reward", "unwritable-output", ["train-reward", "{reach}", "--out", "{blocked}/r"], "cannot write there"),
    ("train-reward", "missing-input", ["train-reward", "{missing}", "--out", "{out}/r"], "{missing}: no such file"),
    ("train-reward", "corrupt-input", ["train-reward", "{corrupt_h5}", "--out", "{out}/r"], "not an HDF5 file"),
    ("train-reward", "corrupt-input", ["train-reward", "{reach}", "--out", "{out}/r", "--store", "{corrupt_h5}"],
     "not a usable label store"),
    ("relabel", "bad-type", ["relabel", "{reach}", "--alpha", "abc"], "--alpha: invalid float value"),
    ("relabel", "missing-input", ["relabel", "{missing}", "--activate-label", "ground_truth"], "no such file"),
    ("relabel", "corrupt-input", ["relabel", "{corrupt_h5}", "--activate-label", "ground_truth"], "not an HDF5"),
    ("train", "bad-type", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--set", "iql.batch_size=abc"],
     "iql.batch_size must be an integer >= 1, got 'abc'"),
    ("train", "bad-type", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--set", "iql.hidden=abc"],
     "iql.hidden must be a list of integers >= 1, got 'abc'"),
    ("train", "bad-type", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--set", "iql.actor_lr=abc"],
     "iql.actor_lr must be a number > 0, got 'abc'"),
    ("train", "bad-value", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--set", "iql.expectile=2"],
     "iql.expectile must be in (0, 1), got 2"),
    ("train", "bad-value", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--steps", "0"],
     "--steps must be >= 1, got 0"),
    ("train", "bad-value", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--set", "iql.stepz=3"],
     "unknown key iql.stepz (did you mean 'steps'?)"),
    ("train", "unwritable-output", ["train", "--dataset", "{reach}", "--out", "{blocked}/t"], "cannot write there"),
    ("train", "missing-input", ["train", "--dataset", "{missing}", "--out", "{out}/t"], "{missing}: no such file"),
    ("train", "corrupt-input", ["train", "--dataset", "{corrupt_h5}", "--out", "{out}/t"], "not an HDF5 file"),
    ("train", "corrupt-input", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--config", "{corrupt_yaml}"],
     "{corrupt_yaml}: cannot read config"),
    ("finetune", "bad-type", ["finetune", "--checkpoint", "{bad_run}", "--steps", "abc"], "invalid int value"),
    ("finetune", "bad-value", ["finetune", "--checkpoint", "{bad_run}", "--steps", "0"], "--steps must be >= 1, got 0"),
    ("finetune", "bad-value", ["finetune", "--checkpoint", "{bad_run}", "--steps", "-5"], "--steps must be >= 1"),
    ("finetune", "unwritable-output", ["finetune", "--checkpoint", "{bad_run}", "--out", "{blocked}/f"],
     "{blocked}/f: cannot write there"),
    ("finetune", "missing-input", ["finetune", "--checkpoint", "{missing}", "--out", "{out}/f"], "no checkpoints"),
    ("finetune", "corrupt-input", ["finetune", "--checkpoint", "{bad_run}", "--out", "{out}/f"],
     "none of the 1 checkpoints could be read (newest: step_000000010.pt"),
    ("eval", "bad-type", ["eval", "--checkpoint", "{bad_run}", "--episodes", "abc"], "invalid int value"),
    ("eval", "bad-value", ["eval", "--checkpoint", "{bad_run}", "--episodes", "0"], "--episodes must be >= 1"),
    ("eval", "missing-input", ["eval", "--checkpoint", "{missing}"], "no checkpoints"),
    ("eval", "corrupt-input", ["eval", "--checkpoint", "{bad_run}"], "none of the 1 checkpoints could be read"),
    ("pipeline", "bad-type", ["pipeline", "--out", "{out}/p", "--set", "train.iql.batch_size=abc"],
     "train.iql.batch_size must be an integer >= 1, got 'abc'"),
    ("pipeline", "bad-value", ["pipeline", "--out", "{out}/p", "--set", "train.iql.expectile=2"],
     "train.iql.expectile must be in (0, 1), got 2"),
    ("pipeline", "unwritable-output", ["pipeline", "--out", "{blocked}/p"], "{blocked}/p"),
    ("pipeline", "missing-input", ["pipeline", "--config", "{missing}", "--out", "{out}/p"], "no such config file"),
    ("pipeline", "corrupt-input", ["pipeline", "--config", "{corrupt_yaml}", "--out", "{out}/p"],
     "{corrupt_yaml}: cannot read config"),
    ("calibrate", "bad-type", [*INTRINSICS, "--images", "{images}", "--out", "{out}/c.yaml", "--min-images", "x"],
     "--min-images: invalid int value"),
    ("calibrate", "bad-value", [*INTRINSICS, "--images", "{images}", "--out", "{out}/c.yaml", "--min-images", "0"],
     "--min-images must be >= 3"),
    ("calibrate", "unwritable-output", [*INTRINSICS, "--images", "{images}", "--out", "{blocked}/c.yaml"],
     "{blocked}/c.yaml: cannot write there"),
    ("calibrate", "missing-input", [*INTRINSICS, "--images", "{missing}", "--out", "{out}/c.yaml"], "{missing}"),
    ("calibrate", "corrupt-input", [*INTRINSICS, "--images", "{images}", "--out", "{out}/c.yaml"],
     "cannot read image"),
    ("calibrate", "corrupt-input", ["calibrate", "hand-eye", "--poses", "{corrupt_yaml}", "--out", "{out}/h.yaml"],
     "{corrupt_yaml}: not valid YAML"),
    ("import-bag", "bad-value", ["import-bag", "{empty_dir}", "--spec", "{bag_spec}", "--out", "{out}/b.h5",
                                 "--image-compression", "zip"], "--image-compression: invalid choice"),
    ("import-bag", "unwritable-output", ["import-bag", "{empty_dir}", "--spec", "{bag_spec}", "--out",
                                         "{blocked}/b.h5"], "{blocked}/b.h5: cannot write there"),
    ("import-bag", "missing-input", ["import-bag", "{missing}", "--spec", "{bag_spec}", "--out", "{out}/b.h5"],
     "{missing}: no such bag"),
    ("import-bag", "corrupt-input", ["import-bag", "{corrupt_h5}", "--spec", "{bag_spec}", "--out", "{out}/b.h5"],
     "cannot open the bag"),
    ("import-bag", "corrupt-input", ["import-bag", "{empty_dir}", "--spec", "{corrupt_yaml}", "--out", "{out}/b.h5"],
     "cannot read the topics spec"),
    ("reward-search", "bad-type", ["reward-search", *RS, "--iterations", "abc"], "--iterations: invalid int"),
    ("reward-search", "unwritable-output", ["reward-search", *RS, "--dataset", "{reach}", "--out", "{blocked}/rs"],
     "{blocked}/rs: cannot write there"),
    ("reward-search", "missing-input", ["reward-search", *RS, "--dataset", "{missing}", "--out", "{out}/rs"],
     "{missing}: no such file"),
    ("reward-search", "corrupt-input", ["reward-search", *RS, "--dataset", "{corrupt_h5}", "--out", "{out}/rs"],
     "not an HDF5 file"),
    ("train-success", "bad-type", ["train-success", "--dataset", "{reach}", "--out", "{out}/s", "--set",
                                   "members=abc"], "members must be an integer >= 1, got 'abc'"),
    ("train-success", "bad-value", ["train-success", "--dataset", "{reach}", "--out", "{out}/s", "--threshold",
                                    "1.5"], "--threshold must be in (0, 1), got 1.5"),
    ("train-success", "unwritable-output", ["train-success", "--dataset", "{reach}", "--out", "{blocked}/s"],
     "{blocked}/s: cannot write there"),
    ("train-success", "missing-input", ["train-success", "--dataset", "{missing}", "--out", "{out}/s"],
     "{missing}: no such file"),
    ("train-success", "corrupt-input", ["train-success", "--dataset", "{corrupt_h5}", "--out", "{out}/s"],
     "not an HDF5 file"),
    ("import", "bad-type", ["import", "lerobot:{empty_dir}", "--out", "{out}/i.h5", "--image-size", "abc"],
     "--image-size 'abc': expected HxW"),
    ("import", "bad-value", ["import", "foo:{reach}", "--out", "{out}/i.h5"], "'foo:{reach}': unknown source"),
    ("import", "unwritable-output", ["import", "robomimic:{reach}", "--out", "{blocked}/i.h5"],
     "{blocked}/i.h5: cannot write there"),
    ("import", "missing-input", ["import", "robomimic:{missing}", "--out", "{out}/i.h5"], "{missing}"),
    ("import", "corrupt-input", ["import", "robomimic:{corrupt_h5}", "--out", "{out}/i.h5"], "{corrupt_h5}"),
    ("export", "bad-value", ["export", "{reach}", "--to", "foo:{out}/x"], "unknown source"),
    ("export", "unwritable-output", ["export", "{reach}", "--to", "robomimic:{blocked}/x.hdf5"],
     "--to {blocked}/x.hdf5: cannot write there"),
    ("export", "missing-input", ["export", "{missing}", "--to", "robomimic:{out}/x.hdf5"], "{missing}: no such file"),
    ("export", "corrupt-input", ["export", "{corrupt_h5}", "--to", "robomimic:{out}/x.hdf5"], "not an HDF5 file"),
    ("sweep", "unwritable-output", ["sweep", "--config", "{sweep_config}", "--out", "{blocked}/sw"],
     "{blocked}/sw: cannot write there"),
    ("sweep", "missing-input", ["sweep", "--config", "{missing}"], "{missing}"),
    ("sweep", "corrupt-input", ["sweep", "--config", "{corrupt_yaml}"], "{corrupt_yaml}"),
    ("compare-rewards", "bad-type", ["compare-rewards", "{reach}", "--gamma", "abc"], "--gamma: invalid float"),
    ("compare-rewards", "unwritable-output", ["compare-rewards", "{reach}", "--out", "{blocked}/cr"],
     "{blocked}/cr: cannot write there"),
    ("compare-rewards", "missing-input", ["compare-rewards", "{missing}"], "{missing}: no such file"),
    ("compare-rewards", "corrupt-input", ["compare-rewards", "{corrupt_h5}"], "not an HDF5 file"),
    ("actor", "bad-type", ["actor", "--spec", "{missing}", "--spool", "{out}/s", "--rate-hz", "abc"],
     "--rate-hz: invalid float value"),
    ("actor", "bad-value", ["actor", "--spec", "{missing}", "--spool", "{out}/s", "--rate-hz", "0"],
     "--rate-hz must be"),
    ("actor", "unwritable-output", ["actor", "--spec", "{missing}", "--spool", "{blocked}/s"],
     "{blocked}/s: cannot write there"),
    ("actor", "missing-input", ["actor", "--spec", "{missing}", "--spool", "{out}/s"],
     "--spec {missing}: no such file or run folder"),
    ("actor", "corrupt-input", ["actor", "--spec", "{corrupt_yaml}", "--spool", "{out}/s"],
     "--spec {corrupt_yaml}: not an EnvSpec JSON"),
    ("actor", "corrupt-input", ["actor", "--spec", "{bad_run}", "--spool", "{out}/s"], "{bad_run}"),
    ("learner", "bad-type", ["learner", "--checkpoint", "{bad_run}", "--out", "{out}/l", "--push-every-s", "abc"],
     "--push-every-s: invalid float value"),
    ("learner", "bad-value", ["learner", "--checkpoint", "{bad_run}", "--out", "{out}/l", "--push-every-s", "0"],
     "--push-every-s must be"),
    ("learner", "unwritable-output", ["learner", "--checkpoint", "{bad_run}", "--out", "{blocked}/l"],
     "{blocked}/l: cannot write there"),
    ("learner", "missing-input", ["learner", "--checkpoint", "{missing}", "--out", "{out}/l"], "{missing}"),
    ("learner", "corrupt-input", ["learner", "--checkpoint", "{bad_run}", "--out", "{out}/l"], "{bad_run}"),
]

NOT_APPLICABLE = {
    ("collect", "missing-input"): "reads no input file (--resume on a missing file starts it)",
    ("inspect", "bad-value"): "no range-checked value of its own",
    ("relabel", "bad-value"): "no range-checked value of its own",
    ("relabel", "unwritable-output"): "writes into the dataset it reads (a missing one is missing-input)",
    ("eval", "unwritable-output"): "writes into the run folder it reads",
    ("import-bag", "bad-type"): "no typed flag (choices only: bad-value)",
    ("reward-search", "bad-value"): "its ranges are checked by the search config after the LLM is set up",
    ("compare-rewards", "bad-value"): "no range-checked value of its own",
    ("export", "bad-type"): "no typed flag (choices only)",
    ("sweep", "bad-type"): "no typed flag; the sweep YAML's own keys are checked by scale.sweep.read_sweep",
    ("sweep", "bad-value"): "no typed flag; the sweep YAML's own keys are checked by scale.sweep.read_sweep",
}
"""(command, class) pairs with no such input, and why."""

DEVICE_CASES = [
    ("train", ["train", "--dataset", "{reach}", "--out", "{out}/t", "--device", "{device}"]),
    ("train-reward", ["train-reward", "{reach}", "--out", "{out}/r", "--device", "{device}"]),
    ("train-success", ["train-success", "--dataset", "{reach}", "--out", "{out}/s", "--device", "{device}"]),
    ("relabel", ["relabel", "{reach}", "--activate-label", "ground_truth", "--device", "{device}"]),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sweep")
    reach = write_reach(root / "reach.h5", episodes=4, length=10)
    (root / "corrupt.h5").write_bytes(b"this is not an HDF5 file\n" * 8)
    (root / "corrupt.yaml").write_text("a: [unclosed\n  b: {")
    (root / "a_file").write_text("a regular file, where an output folder would have to be\n")
    bad_run = root / "bad_run" / "checkpoints"
    bad_run.mkdir(parents=True)
    (bad_run / "step_000000010.pt").write_bytes(b"not a checkpoint")
    (root / "images").mkdir()
    (root / "images" / "a.png").write_bytes(b"not a PNG")
    (root / "empty_dir").mkdir()
    return {"reach": str(reach), "corrupt_h5": str(root / "corrupt.h5"), "corrupt_yaml": str(root / "corrupt.yaml"),
            "blocked": str(root / "a_file" / "sub"), "missing": str(root / "missing.h5"),
            "bad_run": str(root / "bad_run"), "images": str(root / "images"), "empty_dir": str(root / "empty_dir"),
            "bag_spec": str(Path(__file__).resolve().parents[2] / "configs" / "bag_topics.example.yaml"),
            "sweep_config": str(Path(__file__).resolve().parents[2] / "configs" / "sweep.example.yaml")}


def _fill(argv: list[str], values: dict[str, str]) -> list[str]:
    return [a.format(**values) for a in argv]


def assert_one_line_error(code: int, err: str, command: str, needle: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"robot-rl {command}"), lines[0]
    assert ": error: " in lines[0], lines[0]
    assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_every_command_is_swept_with_every_class() -> None:
    covered = {(c, k) for c, k, _, _ in CASES}
    for command in COMMANDS:
        for kind in CLASSES:
            assert (command, kind) in covered or (command, kind) in NOT_APPLICABLE, (command, kind)
    assert not covered & set(NOT_APPLICABLE)
    assert {c for c, _, _, _ in CASES} == set(COMMANDS)


@pytest.mark.parametrize(("command", "kind", "argv", "needle"), CASES,
                         ids=[f"{c}-{k}-{i}" for i, (c, k, _, _) in enumerate(CASES)])
def test_bad_input_is_one_line_and_exit_2(files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          command: str, kind: str, argv: list[str], needle: str) -> None:
    values = {**files, "out": str(tmp_path)}
    code = main(_fill(argv, values))
    assert_one_line_error(code, capsys.readouterr().err, command, needle.format(**values))


@pytest.mark.parametrize("device", ["foo", "cuda:7" if torch.cuda.is_available() else "cuda"])
@pytest.mark.parametrize(("command", "argv"), DEVICE_CASES, ids=[c for c, _ in DEVICE_CASES])
def test_a_device_this_machine_lacks_is_one_line(files: dict[str, str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], command: str, argv: list[str],
                                                 device: str) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    code = main(_fill(argv, {**files, "out": str(tmp_path), "device": device}))
    assert_one_line_error(code, capsys.readouterr().err, command, f"device '{device}'")


# -- full disk: a real filesystem that is full --------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 4 MiB tmpfs (mount needs root or CAP_SYS_ADMIN: skipped without); tests fill it with ``_filled``."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mnt = tmp_path_factory.mktemp("full")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", f"tmpfs-robot-rl-{uuid.uuid4().hex[:6]}",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _filled(mnt: Path) -> None:
    """Fill ``mnt`` up to the last block (new files can still be made: they are what fails to grow)."""
    gc.collect()  # files an earlier case left open (deleted, still holding blocks) must not free up space later
    with open(mnt / f"filler-{uuid.uuid4().hex[:6]}", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.fixture
def disk(full_disk: Path) -> Iterator[Path]:
    folder = full_disk / uuid.uuid4().hex[:6]
    folder.mkdir()
    yield folder
    for p in full_disk.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


FULL_DISK_CASES = [
    ("label", ["label", "{disk}/reach.h5", "--pairs", "5", "--segment-length", "5"], "disk full"),
    ("train", ["train", "--dataset", "{reach}", "--out", "{disk}/t", "--steps", "2", "--eval-episodes", "0",
               "--set", "iql.hidden=[8]", "--device", "cpu"], "disk full"),
    ("train-reward", ["train-reward", "{disk}/reach.h5", "--out", "{disk}/r", "--steps", "2", "--set",
                      "hidden=[8]", "--device", "cpu"], "disk full"),
    ("inspect", ["inspect", "{reach}", "--png", "{disk}/x.png"], "disk full"),
    ("collect", ["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "3", "--episode-length", "40",
                 "--image-every", "1", "--image-size", "64", "--out", "{disk}/c.h5"], "disk full"),
    ("relabel", ["relabel", "{disk}/reach.h5", "--source", "reward-model:{disk}/r", "--id", "learned"], "disk full"),
]


@pytest.mark.parametrize(("command", "argv", "needle"), FULL_DISK_CASES, ids=[c for c, _, _ in FULL_DISK_CASES])
def test_a_full_disk_ends_in_one_error_line(files: dict[str, str], disk: Path, capsys: pytest.CaptureFixture[str],
                                            command: str, argv: list[str], needle: str) -> None:
    shutil.copy(files["reach"], disk / "reach.h5")
    if command in ("train-reward", "relabel"):  # labels (and the model) first, while there is room
        assert main(["label", str(disk / "reach.h5"), "--pairs", "10", "--segment-length", "5"]) == 0
    if command == "relabel":
        assert main(["train-reward", str(disk / "reach.h5"), "--out", str(disk / "r"), "--steps", "2", "--set",
                     "hidden=[8]", "--device", "cpu"]) == 0
    _filled(disk.parent)
    capsys.readouterr()
    code = main(_fill(argv, {**files, "disk": str(disk)}))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    last = lines[-1]  # a command that had started may have printed its progress before
    assert last.startswith(f"robot-rl {command}: error: ") and needle in last, err
    assert "no space left on device" in last and "--debug" not in last, last
    if command == "relabel":  # nothing lost: the dataset reads as before, without a half-written label
        with Dataset(disk / "reach.h5") as ds:
            assert "learned" not in ds.reward_label_ids() and ds.episode_names
    if command == "collect" and (disk / "c.h5").exists():  # the episodes that made it are whole
        with Dataset(disk / "c.h5") as ds:
            for name in ds.episode_names:
                ds.load_episode(name)
