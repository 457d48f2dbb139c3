"""label -> train-reward -> relabel from the command line, the VLM labeler killed and resumed against a local
OpenAI-compatible server, and the whole pipeline on a tiny config."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.rewards.relabel import active_label
from robot_rl.rewards.sources import LearnedReward, resolve_reward_source
from tests.llm.replay_server import Behaviour, RecordedRequest, ReplayServer
from tests.rewards.conftest import write_reach

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "drawer-open-tiny.h5"


def test_label_train_reward_relabel_then_finetune_uses_the_learned_reward(tmp_path: Path, capsys) -> None:
    data = write_reach(tmp_path / "reach.h5", episodes=20)
    assert main(["label", str(data), "--pairs", "150", "--segment-length", "10"]) == 0
    assert "agreement with ground truth 100.0%" in " ".join(capsys.readouterr().err.split())
    assert main(["label", str(data), "--pairs", "150", "--segment-length", "10"]) == 0  # all from the store
    assert "0 asked now, 150 from the store" in " ".join(capsys.readouterr().err.split())
    run = tmp_path / "reward"
    assert main(["train-reward", str(data), "--out", str(run), "--steps", "300", "--set", "hidden=[64, 64]",
                 "--set", "batch_size=32"]) == 0
    metrics = json.loads((run / "reward_metrics.json").read_text())
    assert metrics["labels"]["used"] == 150 and metrics["valid_accuracy"] > 0.8
    assert metrics["correlation"]["mean_episode"] > 0.5
    assert (run / "reward_vs_truth.png").stat().st_size > 10_000
    assert main(["relabel", str(data), "--source", f"reward-model:{run}", "--activate"]) == 0
    assert active_label(str(data)) == "reward_model"
    with Dataset(data) as ds:
        ep = ds.load_episode(ds.episode_names[3])
        np.testing.assert_array_equal(ep.rewards, ep.reward_labels["reward_model"][0])
        assert ep.reward_labels["reward_model"][1]["precision"] == "fp32"  # the CPU default
        assert np.corrcoef(ep.rewards, ep.reward_labels["ground_truth"][0])[0, 1] > 0.5
    source = resolve_reward_source("dataset", str(data))  # online fine-tuning labels new steps the same way
    assert isinstance(source, LearnedReward)
    import torch

    with Dataset(data) as ds:
        ep = ds.load_episode(ds.episode_names[3])
    online = source({"state": torch.as_tensor(ep.states)}, torch.as_tensor(ep.actions), {}, torch.zeros(ep.length))
    np.testing.assert_allclose(online.numpy(), ep.rewards, rtol=1e-5, atol=1e-6)


def test_an_image_reward_model_trains_and_relabels_from_rendered_frames(tmp_path: Path) -> None:
    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    assert main(["label", str(data), "--pairs", "30", "--segment-length", "2"]) == 0
    run = tmp_path / "img-reward"
    assert main(["train-reward", str(data), "--out", str(run), "--obs", "image", "--steps", "5",
                 "--set", "image_size=32", "--set", "conv_strides=[2, 2, 1, 1]", "--set", "batch_size=8"]) == 0
    assert yaml.safe_load((run / "reward_config.yaml").read_text())["camera"]
    assert main(["relabel", str(data), "--source", f"reward-model:{run}", "--id", "img"]) == 0
    with Dataset(data) as ds:
        values = ds.load_episode(ds.episode_names[0]).reward_labels["img"][0]
    assert values.shape == (30,) and np.isfinite(values).all() and values.std() > 0


def test_clip_relabel_from_a_local_checkpoint(tmp_path: Path) -> None:
    import open_clip
    import torch

    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    checkpoint = tmp_path / "clip.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-S-32-alt", pretrained=None).state_dict(), checkpoint)  # random weights
    assert main(["relabel", str(data), "--source", f"clip:{checkpoint}", "--clip-model", "ViT-S-32-alt",
                 "--baseline", "a robot arm", "--image-size", "64"]) == 0
    with Dataset(data) as ds:
        ep = ds.load_episode(ds.episode_names[0])
    values, provenance = ep.reward_labels["clip"]
    assert values.shape == (ep.length,) and np.isfinite(values).all() and values.std() > 0
    assert provenance["labeler"] == "clip" and provenance["goal"] == ["open the drawer"]
    assert provenance["baseline"] == ["a robot arm"] and len(provenance["checkpoint_sha256"]) == 64
    assert provenance["precision"] == "fp32"  # the CPU default
    np.testing.assert_array_equal(ep.rewards, ep.reward_labels["ground_truth"][0])  # not activated
    assert main(["relabel", str(data), "--source", f"clip:{checkpoint}", "--clip-model", "ViT-S-32-alt",
                 "--baseline", "a robot arm", "--image-size", "64", "--precision", "bf16", "--id", "clip_bf16"]) == 0
    with Dataset(data) as ds:
        fast, provenance = ds.load_episode(ds.episode_names[0]).reward_labels["clip_bf16"]
    assert provenance["precision"] == "bf16" and 0 < np.abs(fast - values).max() < 1e-2


def test_bad_input_gives_one_line_errors(tmp_path: Path, capsys) -> None:
    data = write_reach(tmp_path / "reach.h5", episodes=4)
    assert main(["train-reward", str(data), "--out", str(tmp_path / "r")]) == 2
    assert "no label store" in capsys.readouterr().err
    assert main(["relabel", str(data), "--source", "reward-model:/nonexistent"]) == 2
    assert "no reward_model.pt" in capsys.readouterr().err
    assert main(["relabel", str(data), "--source", "magic:x"]) == 2
    assert "expected reward-model:RUN_DIR" in capsys.readouterr().err
    assert main(["relabel", str(data), "--source", "code:x.py", "--precision", "bf16"]) == 2
    assert "--precision applies to the reward-model and clip sources only" in capsys.readouterr().err
    assert main(["label", str(data), "--labeler", "vlm", "--pairs", "3"]) == 2
    assert "--vlm-url" in capsys.readouterr().err


def _vlm_answers(request: RecordedRequest) -> Behaviour:
    if request.image_parts():  # stage 1: describe both frames
        return Behaviour(content="Image 1: the drawer is closed. Image 2: the drawer is further open.", delay_s=0.2)
    return Behaviour(content="The second image is closer to the goal.\nAnswer: 1")


def test_vlm_labeling_killed_with_kill_9_resumes_without_paying_twice(tmp_path: Path) -> None:
    data = tmp_path / "drawer.h5"
    shutil.copy(SAMPLE, data)
    store = tmp_path / "labels.sqlite"
    argv = ["label", str(data), "--labeler", "vlm", "--model", "replay-model", "--pairs", "24",
            "--image-size", "32", "--concurrency", "2", "--store", str(store)]
    with ReplayServer(responder=_vlm_answers) as server:
        argv += ["--vlm-url", server.base_url]
        proc = subprocess.Popen([sys.executable, "-m", "robot_rl.cli.main", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        stored = 0
        while stored < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if store.exists():
                try:
                    with sqlite3.connect(store) as db:
                        stored = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
                except sqlite3.OperationalError:  # the table is not created yet
                    pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 6 <= stored < 24, proc.stderr.read().decode() if proc.stderr else ""
        first_run = server.count
        assert main(argv) == 0
        with sqlite3.connect(store) as db:
            rows = db.execute("SELECT value, provenance FROM labels").fetchall()
        keys = {r.key for r in server.requests}
        assert len(rows) == 24  # every pair labeled once (identical frames are stored as can't tell)
        assert all(v == 1.0 for v, p in rows if "identical" not in p)
        # Stage 1 (the two frames) is unique per pair: only a stage-1 request whose reply the kill cut off may have
        # been sent again (at most one per concurrent query). Stage 2 is text only, so pairs whose stage-1 analyses
        # read the same send the same stage-2 request (and a temperature-0 model gives them the same answer).
        stage1 = Counter(r.key for r in server.requests if r.image_parts())
        assert len(stage1) == 24 - sum("identical" in p for _, p in rows)
        assert sum(n - 1 for n in stage1.values()) <= 2
        assert server.count - first_run <= 2 * (24 - stored) + 2 and len(keys) <= server.count


@pytest.mark.slow
def test_pipeline_runs_end_to_end_on_a_tiny_config(tmp_path: Path) -> None:
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml").read_text())
    cfg.update(collect={"episodes": 6, "num_envs": 2}, reward_model={"steps": 30, "hidden": [32, 32]},
               train={"steps": 200}, finetune={"env_steps": 300, "warmup_env_steps": 100, "eval_every": 300},
               eval={"episodes": 2})
    cfg["label"].update(pairs=40, segment_length=20)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(config), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs labeled"] == 40 and summary["label agreement with ground truth"] == 1.0
    assert 0 <= summary["offline IQL (learned reward) success"] <= 1
    assert 0 <= summary["after online fine-tuning (learned reward) success"] <= 1
    assert active_label(str(out / "drawer-open-v3.h5")) == "reward_model"
    report = (out / "report.md").read_text()
    assert "reward_vs_truth.png" in report and (out / "reward_vs_truth.png").exists()
    assert main(["pipeline", "--config", str(config), "--out", str(out)]) == 2  # never overwrites silently
