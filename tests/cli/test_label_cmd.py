"""``robot-rl label``: --task is a task name (its sentence from the task card) and train-reward finds the labels;
a dead VLM endpoint fails the command in one line and stores nothing."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import time
from pathlib import Path

from robot_rl.cli.main import main
from robot_rl.rewards.store import LabelStore

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "drawer-open-tiny.h5"


def test_label_with_a_task_name_then_train_reward_finds_the_pairs(tmp_path: Path, capsys) -> None:
    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    assert main(["label", str(data), "--task", "metaworld/drawer-open-v3", "--pairs", "20",
                 "--segment-length", "5"]) == 0
    with LabelStore(str(data) + ".labels.sqlite") as store:
        rows = store.labels()
    assert len(rows) == 20 and {r.label.provenance["task_text"] for r in rows} == {"open the drawer"}
    run = tmp_path / "reward"
    assert main(["train-reward", str(data), "--out", str(run), "--steps", "5", "--set", "hidden=[16]"]) == 0
    used = json.loads((run / "reward_metrics.json").read_text())["labels"]
    assert used["used"] + used["cant_tell"] == 20 and used["used"] > 0 and used["other_task"] == 0
    # the same name without the env prefix, and no --task at all, ask nothing new: same sentence, same labels
    capsys.readouterr()
    assert main(["label", str(data), "--task", "drawer-open-v3", "--pairs", "20", "--segment-length", "5"]) == 0
    assert main(["label", str(data), "--pairs", "20", "--segment-length", "5"]) == 0
    assert capsys.readouterr().err.count("0 asked now, 20 from the store") == 2


def test_custom_task_text_is_kept_apart_and_unknown_task_refused(tmp_path: Path, capsys) -> None:
    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    assert main(["label", str(data), "--task", "metaworld/drawer-opn-v3", "--pairs", "5"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no task card" in err and "drawer-open-v3" in err
    assert main(["label", str(data), "--task-text", "open the drawer halfway", "--pairs", "10",
                 "--segment-length", "5"]) == 0
    capsys.readouterr()
    assert main(["train-reward", str(data), "--out", str(tmp_path / "r"), "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after train-reward's progress bar
    assert err.startswith("robot-rl train-reward: error:")
    assert "usable for the task 'open the drawer'" in err and "10 asked for another task sentence" in err
    assert "'open the drawer halfway'" in err


def test_dead_vlm_endpoint_fails_in_one_line_and_stores_nothing(tmp_path: Path, capsys) -> None:
    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    store = tmp_path / "labels.sqlite"
    start = time.monotonic()
    code = main(["label", str(data), "--labeler", "vlm", "--vlm-url", url, "--model", "m", "--pairs", "6",
                 "--image-size", "32", "--store", str(store)])
    elapsed = time.monotonic() - start
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar's last state
    assert err.startswith("robot-rl label: error: POST ")
    assert f"127.0.0.1:{port}/v1/chat/completions" in err and "Connection refused" in err
    assert "can't tell" not in err
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0
    assert elapsed < 30, elapsed  # the first query's retries, not every query's
