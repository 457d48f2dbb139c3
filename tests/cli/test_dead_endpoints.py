"""Every command that talks to a model server fails in one line, exit 2, naming the URL, when nobody serves there
(a loopback port nobody listens on), and stores no answer: issue 15's "dead endpoints" class over the commands that
take an endpoint (``pipeline`` reaches it through ``label``: its stage line plus the resume hint)."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from robot_rl.cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "drawer-open-tiny.h5"


def _dead_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("dead") / "drawer.h5"
    shutil.copy(SAMPLE, data)
    assert main(["label", str(data), "--pairs", "6", "--segment-length", "2"]) == 0  # scripted: for reward-search
    return data


@pytest.mark.parametrize("command", ["label", "train-success", "reward-search"])
def test_a_dead_endpoint_is_one_line_naming_the_url(command: str, labeled: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url = _dead_url()
    data = tmp_path / "drawer.h5"
    shutil.copy(labeled, data)
    argv = {
        "label": ["label", str(data), "--labeler", "vlm", "--vlm-url", url, "--model", "m", "--pairs", "3",
                  "--store", str(tmp_path / "vlm.sqlite")],
        "train-success": ["train-success", "--dataset", str(data), "--out", str(tmp_path / "s"), "--labeler", "vlm",
                          "--vlm-url", url, "--model", "m", "--frames", "3", "--success-labels",
                          str(tmp_path / "success.sqlite"), "--device", "cpu"],
        "reward-search": ["reward-search", "--task", "metaworld/drawer-open-v3", "--llm-url", url, "--model", "m",
                          "--trainer", "none", "--dataset", str(labeled), "--labels", f"{labeled}.labels.sqlite",
                          "--iterations", "1", "--samples", "2", "--final-seeds", "0", "--out", str(tmp_path / "r")],
    }[command]
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    last = err[-1]
    assert last.startswith(f"robot-rl {command}: error: ") and url.rsplit("/", 1)[0] in last, err
    assert "Traceback" not in "\n".join(err)
    for store in ("vlm.sqlite", "success.sqlite"):  # nothing stored as if it were an answer
        path = tmp_path / store
        if path.exists():
            with sqlite3.connect(path) as db:
                tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
                rows = sum(db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables)
            assert rows == 0, (store, tables)
