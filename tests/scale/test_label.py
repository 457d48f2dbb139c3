"""``label --labeler vlm --ray-address``: on the two-node loopback cluster, against the loopback VLM replay server,
the stored labels equal a single-process run's, also when a worker is SIGKILLed mid-run (Ray restarts it) and when
the driver is SIGKILLed (the rerun asks only the rest); the global concurrency and rate limits hold over workers;
no query is paid twice beyond the requests a kill cut off."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.rewards.jobs import label_dataset, make_labeler
from robot_rl.rl.image_data import dataset_camera
from robot_rl.scale.label import RayVLMLabeler
from tests.llm.replay_server import Behaviour, RecordedRequest, ReplayServer, reply

pytestmark = pytest.mark.slow
SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "drawer-open-tiny.h5"
PAIRS = 16


def judge(request: RecordedRequest) -> Behaviour:
    """A fake VLM that answers from the images: stage 1 compares the frames' brightness (slowly, so that kills land
    mid-run), stage 2 reads the verdict back out of the analysis."""
    images = request.images()
    if images:
        a, b = (float(img.mean()) for img in images)
        closer = "Image 1" if a > b + 0.5 else "Image 2" if b > a + 0.5 else "neither"
        return reply(f"Image 1: {a:.1f}. Image 2: {b:.1f}. Verdict: {closer}.", delay_s=0.3)
    verdict = re.search(r"Verdict: (Image 1|Image 2|neither)\.", request.last_text)
    assert verdict is not None, request.last_text
    return reply(f"Answer: {({'Image 1': '0', 'Image 2': '1', 'neither': '-1'})[verdict.group(1)]}")


def _argv(data: Path, store: Path, url: str, *extra: str) -> list[str]:
    return ["label", str(data), "--labeler", "vlm", "--model", "replay-model", "--pairs", str(PAIRS),
            "--image-size", "32", "--concurrency", "2", "--store", str(store), "--vlm-url", url, *extra]


def _rows(store: Path) -> dict[str, float | None]:
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT key, value FROM labels").fetchall())


def _stage1_resent(server: ReplayServer) -> int:
    """Stage-1 requests (the two frames, unique per pair) sent more than once."""
    return sum(n - 1 for n in Counter(r.key for r in server.requests if r.image_parts()).values())


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict[str, float | None]:
    """The labels of a single-process run."""
    root = tmp_path_factory.mktemp("label")
    data = root / "d.h5"
    shutil.copy(SAMPLE, data)
    with ReplayServer(responder=judge) as server:
        assert main(_argv(data, root / "s.sqlite", server.base_url)) == 0
    rows = _rows(root / "s.sqlite")
    assert len(rows) == PAIRS and len(set(rows.values())) > 1  # the answers differ: the comparison means something
    return rows


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(responder=judge) as s:
        yield s


def test_a_killed_worker_loses_nothing_and_the_labels_equal_one_process(single, ray_cluster, server, tmp_path):
    data = tmp_path / "d.h5"
    shutil.copy(SAMPLE, data)
    store = tmp_path / "labels.sqlite"
    with Dataset(data) as ds:
        camera = dataset_camera(ds, None)
    options = {"vlm_url": server.base_url, "model": "replay-model", "concurrency": 2,
               "frames_identity": {"camera": camera, "size": [32, 32]}, "cache_path": f"{store}.llm-cache"}
    killed: list[int] = []

    def on_workers(pids: list[int]) -> None:
        assert len(pids) == 2  # one actor per node

        def kill() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and server.count < 8:
                time.sleep(0.02)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        threading.Thread(target=kill, daemon=True).start()

    labeler = RayVLMLabeler(make_labeler("vlm", **options), str(data), options, camera, 32, ray_cluster.address,
                            on_workers=on_workers)
    job = label_dataset(str(data), labeler, PAIRS, 1, store=str(store), image_size=32)
    assert killed, "the worker was not killed while labeling ran"
    assert job.result.asked + job.result.reused == PAIRS
    assert _rows(store) == single
    assert _stage1_resent(server) <= 2  # at most the queries in flight when the worker died
    assert server.max_in_flight <= 2  # one concurrency limit over both workers
    assert labeler.usage["requests"] > 0  # the workers' clients, summed (a killed worker's count is lost)


def test_a_killed_driver_loses_nothing_and_the_rerun_asks_only_the_rest(single, ray_cluster, server, tmp_path, capsys):
    data = tmp_path / "d.h5"
    shutil.copy(SAMPLE, data)
    store = tmp_path / "labels.sqlite"
    argv = _argv(data, store, server.base_url, "--ray-address", ray_cluster.address)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen([sys.executable, "-m", "robot_rl.cli.main", *argv], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    stored = 0
    deadline = time.monotonic() + 180
    while stored < 4 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
        if store.exists():
            try:
                stored = len(_rows(store))
            except sqlite3.OperationalError:  # the table is not created yet
                pass
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert 4 <= stored < PAIRS, driver.stderr.read().decode() if driver.stderr else ""
    first = server.count
    capsys.readouterr()
    assert main(argv) == 0
    assert _rows(store) == single
    err = " ".join(capsys.readouterr().err.split())
    assert f"{PAIRS} pairs:" in err and "from the store" in err
    assert _stage1_resent(server) <= 2  # only requests the kill cut off (replies the workers got are cached)
    assert server.count - first <= 2 * (PAIRS - stored) + 2


def test_one_rate_limit_over_all_workers(ray_cluster, server, tmp_path):
    data = tmp_path / "d.h5"
    shutil.copy(SAMPLE, data)
    store = tmp_path / "labels.sqlite"
    assert main(_argv(data, store, server.base_url, "--pairs", "6", "--ray-address", ray_cluster.address,
                      "--requests-per-minute", "300")) == 0  # one request every 0.2 s, over both workers
    times = sorted(r.time for r in server.requests)
    assert len(times) >= 6
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # evenly spaced slots from the one limiter (slack for the HTTP path); two limiters would pair requests up
    assert min(gaps) >= 0.1 and times[-1] - times[0] >= 0.18 * (len(times) - 1), gaps


def test_ray_flags_are_checked(tmp_path, capsys):
    data = tmp_path / "d.h5"
    shutil.copy(SAMPLE, data)
    assert main(["label", str(data), "--pairs", "2", "--ray-address", "local"]) == 2
    assert "spreads VLM queries" in capsys.readouterr().err
    assert main(["label", str(data), "--pairs", "2", "--labeler", "vlm", "--ray-workers", "2"]) == 2
    assert "--ray-workers needs --ray-address" in capsys.readouterr().err


def test_a_dead_endpoint_on_the_workers_is_the_one_line_of_the_single_process_run(ray_cluster, tmp_path, capsys):
    data = tmp_path / "d.h5"
    shutil.copy(SAMPLE, data)
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    store = tmp_path / "labels.sqlite"
    assert main(_argv(data, store, url, "--pairs", "4", "--ray-address", ray_cluster.address)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1 and lines[0].startswith("robot-rl label: error: ") and "127.0.0.1" in lines[0], lines
    assert "Ray" not in lines[0]  # the workers' own error (LLMConnectionError), not Ray's wrapper
    assert not store.exists() or not _rows(store)
