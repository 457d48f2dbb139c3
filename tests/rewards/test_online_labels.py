"""The online preference loop of fine-tuning (``rewards/online.py``) in real MetaWorld: a tiny offline pipeline
(collect, scripted labels, reward ensemble, relabel, IQL), then fine-tuning that asks new labels on its rollouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.envs import make_env
from robot_rl.nn.normalize import ObsNormalizer
from robot_rl.rewards.labelers import make_labeler
from robot_rl.rewards.labelers.vlm import VLMLabeler
from robot_rl.rewards.model import RewardModel
from robot_rl.rewards.online import (
    ROLLOUTS_FILE,
    ROUNDS_FILE,
    OnlineLabelsConfig,
    OnlinePreferences,
    rewards_came_from,
)
from robot_rl.rewards.sources import LearnedReward, resolve_reward_source
from robot_rl.rewards.store import LabelStore
from robot_rl.rl.finetune import FinetuneConfig, OnlineReplay, finetune
from robot_rl.rl.reward_updates import update_and_relabel
from tests.llm.replay_server import Behaviour, RecordedRequest, ReplayServer, fast_config, reply

TASK = "metaworld/drawer-open-v3"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two busy cores: tiny updates run far faster on one thread
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """d.h5 (6 episodes of 30 steps) with 30 scripted labels of 10-step segments in d.h5.labels.sqlite, a reward
    ensemble trained on them that relabeled the dataset, and an IQL run on the relabeled data."""
    root = tmp_path_factory.mktemp("online")
    data = str(root / "d.h5")
    assert main(["collect", "--task", TASK, "--episodes", "6", "--episode-length", "30", "--out", data]) == 0
    assert main(["label", data, "--pairs", "30", "--segment-length", "10"]) == 0
    assert main(["train-reward", data, "--out", str(root / "reward"), "--steps", "20", "--set",
                 "hidden=[32,32]"]) == 0
    assert main(["relabel", data, "--source", f"reward-model:{root / 'reward'}", "--activate"]) == 0
    assert main(["train", "--dataset", data, "--steps", "30", "--out", str(root / "iql"), "--device", "cpu",
                 "--set", "iql.hidden=[32,32]", "--set", "log_every=30", "--eval-episodes", "0"]) == 0
    return root


def judge(request: RecordedRequest) -> Behaviour:
    """A fake VLM that tells apart any two different renders: stage 1 prefers the image with more light in total,
    stage 2 reads the verdict back out of that analysis."""
    images = request.images()
    if images:
        a, b = (int(img.astype(np.int64).sum()) for img in images)
        closer = "Image 1" if a > b else "Image 2" if b > a else "neither"
        return reply(f"Light {a} vs {b}. Verdict: {closer}.")
    verdict = request.last_text.split("Verdict: ")[-1].split(".")[0]
    return reply(f"Answer: {({'Image 1': '0', 'Image 2': '1'}).get(verdict, '-1')}")


def _loop(offline: Path, out: Path, budget: int = 9, every: int = 60, steps: int = 240, labeler: Any = None,
          store: str | None = None, **cfg: Any) -> OnlinePreferences:
    source = resolve_reward_source("dataset", str(offline / "d.h5"))
    assert isinstance(source, LearnedReward)
    env = make_env(TASK, num_envs=2, episode_length=30)
    ocfg = OnlineLabelsConfig(budget=budget, label_every=every, env_steps=steps, reward_steps=10, **cfg)
    learner = OnlinePreferences(source, labeler or make_labeler("scripted"), ocfg, out, env.spec, store,
                                relabels_offline=rewards_came_from(str(offline / "d.h5"), "rewards", source))
    ft = FinetuneConfig(env_steps=steps, warmup_env_steps=60, log_every=120, eval_every=0, eval_episodes=0,
                        updates_per_env_step=0.1, online_labels=budget, label_every=every)
    try:
        finetune(offline / "iql", env, learner, ft, out, learner=learner)
    finally:
        learner.close()
        env.close()
    return learner


def _rounds(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / ROUNDS_FILE).read_text().splitlines()]


def test_rounds_label_through_the_store_with_provenance_and_retrain_warm(offline, tmp_path):
    out = tmp_path / "ft"
    learner = _loop(offline, out)
    rounds = _rounds(out)
    assert [r["env_step"] for r in rounds] == [60, 120, 180]  # every 60 env steps, none at the last one
    assert sum(r["pairs"] for r in rounds) == learner.counts["queries"] == 9  # the budget, spread over the rounds
    assert learner.counts["asked"] == 9 and learner.counts["reused"] == 0
    with LabelStore(offline / "d.h5.labels.sqlite") as store:  # the store the reward model was trained from
        online = store.labels(dataset=str(out / ROLLOUTS_FILE))
        assert len(store.labels(dataset=str(offline / "d.h5"))) == 30  # offline labels untouched
    assert len(online) == 9 and {row.labeler for row in online} == {"scripted"}
    asked = sorted((row.label.provenance["online"]["round"], row.label.provenance["online"]["env_step"])
                   for row in online)
    assert asked == sorted((r["round"], r["env_step"]) for r in rounds for _ in range(r["pairs"]))
    assert all(row.first.length == 10 and row.first.episode in rounds[-1]["episodes"] for row in online)
    # retrained from where it was: the offline model's input normalization kept, its weights moved
    before = RewardModel.load(offline / "reward" / "reward_model.pt")
    after = RewardModel.load(out / "reward" / "reward_model.pt")
    assert torch.equal(before.state_mean, after.state_mean) and torch.equal(before.state_std, after.state_std)
    assert not torch.equal(before.layers[0].weight, after.layers[0].weight)
    assert rounds[-1]["train_pairs"] > 30  # offline + online labels
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["labels/queries"] == 9 and logged[-1]["labels/rounds"] == 3


def test_an_update_relabels_new_and_offline_transitions(offline, tmp_path):
    source = resolve_reward_source("dataset", str(offline / "d.h5"))
    assert isinstance(source, LearnedReward) and rewards_came_from(str(offline / "d.h5"), "rewards", source)
    env = make_env(TASK, num_envs=2, episode_length=30)
    learner = OnlinePreferences(source, make_labeler("scripted"), OnlineLabelsConfig(
        budget=6, label_every=60, env_steps=120, reward_steps=10), tmp_path, env.spec, relabels_offline=True)
    norm, scale = ObsNormalizer.identity(env.spec.state_dim), 2.0
    replay = OnlineReplay(100, env.spec.state_dim, env.spec.action.dim, torch.device("cpu"), 0)
    obs, info = env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for step in range(30):
        action = torch.rand(2, env.spec.action.dim, generator=gen) * 2 - 1
        res = env.step(action)
        learner.observe(obs, info, action, res.info["final_obs"] if step == 29 else res.obs, res.reward,
                        res.terminated, res.truncated, res.info)
        reward = learner(obs, action, res.obs, res.reward) * scale
        replay.add({"obs": obs["state"], "actions": action, "rewards": reward, "next_obs": res.obs["state"],
                    "terminals": res.terminated})
        obs, info = res.obs, res.info
    env.close()
    offline_data = {k: v.clone() for k, v in replay.data.items()}  # stands in for the offline sampler's columns
    old = replay.data["rewards"][:60].clone()
    assert update_and_relabel(learner, 60, (replay.data, replay.size), (offline_data, 20), norm, scale)
    learner.close()
    new_model = learner.source.model
    want = new_model.reward(replay.data["obs"][:60], replay.data["actions"][:60]) * scale
    assert torch.allclose(replay.data["rewards"][:60], want, atol=1e-5) and not torch.allclose(old, want)
    assert torch.allclose(offline_data["rewards"][:20], want[:20], atol=1e-5)
    assert torch.equal(offline_data["rewards"][20:60], old[20:60])  # rows past the given size stay


def test_a_rerun_pays_no_query_twice(offline, tmp_path):
    first = _loop(offline, tmp_path / "a", budget=4, every=120)
    again = _loop(offline, tmp_path / "b", budget=4, every=120)  # same seed: same rollouts, same queries
    assert first.counts["asked"] == 4
    assert again.counts == {"queries": 4, "asked": 0, "reused": 4, "cant_tell": first.counts["cant_tell"]}
    with LabelStore(offline / "d.h5.labels.sqlite") as store:
        assert len(store.labels(dataset=str(tmp_path / "a" / ROLLOUTS_FILE))) == 4
        assert not store.labels(dataset=str(tmp_path / "b" / ROLLOUTS_FILE))  # nothing stored twice


def test_vlm_labels_rendered_frames_over_http_once(offline, tmp_path):
    from robot_rl.data import Dataset
    from robot_rl.llm import LLMClient
    from robot_rl.rl.image_data import dataset_camera

    with Dataset(offline / "d.h5") as ds:
        camera = dataset_camera(ds)
    store = str(tmp_path / "vlm.sqlite")  # no offline labels here: retrained on the online ones alone
    with ReplayServer(responder=judge) as server:
        def run(out: Path) -> OnlinePreferences:
            vlm = VLMLabeler(LLMClient(fast_config(server)), frames_identity={"camera": camera, "size": [32, 32]})
            return _loop(offline, out, budget=4, every=60, steps=120, labeler=vlm, store=store, segment_length=1,
                         image_size=32, selection="uniform")

        first = run(tmp_path / "a")
        sent = server.count
        again = run(tmp_path / "b")
        assert server.count == sent  # the rerun paid for nothing
    assert first.counts["asked"] == 4 and again.counts["reused"] == 4
    assert sent >= 8  # two stages per query (queries of equal-looking frames may send equal bodies: not a re-ask)
    with LabelStore(store) as s:
        rows = s.labels(dataset=str(tmp_path / "a" / ROLLOUTS_FILE))
    assert len(rows) == 4 and {r.labeler for r in rows} == {"vlm"}
    assert all(r.label.provenance["online"] == {"round": 1, "env_step": 60, "run": str((tmp_path / "a").resolve()),
                                                "selection": "uniform"} and r.first.length == 1 for r in rows)
    assert all(r.label.value is not None for r in rows)  # decided from the rendered frames
    assert _rounds(tmp_path / "a")[-1]["train_pairs"] >= 2  # retrained on the online labels alone
    assert all(r.label.provenance["frames"] == {"camera": camera, "size": [32, 32]} for r in rows)


def test_finetune_cli_refuses_online_labels_without_a_learned_reward(offline, tmp_path, capsys):
    code = main(["finetune", "--checkpoint", str(offline / "iql"), "--reward", "ground_truth", "--steps", "10",
                 "--online-labels", "4", "--label-every", "5", "--out", str(tmp_path / "x")])
    assert code == 2 and "--online-labels retrains a learned reward" in capsys.readouterr().err
    code = main(["finetune", "--checkpoint", str(offline / "iql"), "--steps", "10", "--online-labels", "4",
                 "--label-every", "50", "--out", str(tmp_path / "x")])
    assert code == 2 and "--label-every must be between 1 and the fine-tuning env steps (10) less one" in \
        capsys.readouterr().err


def test_finetune_refuses_online_labels_without_a_learner(offline, tmp_path):
    env = make_env(TASK, episode_length=30)
    try:
        with pytest.raises(ValueError, match="online_labels=3 needs a reward that learns online"):
            finetune(offline / "iql", env, resolve_reward_source("dataset", str(offline / "d.h5")),
                     FinetuneConfig(env_steps=10, online_labels=3, label_every=5), tmp_path / "x")
    finally:
        env.close()


def test_pipeline_config_takes_the_online_keys_and_refuses_a_misspelled_one():
    from robot_rl.cli.pipeline_config import check_config

    check_config({"finetune": {"online_labels": 100, "label_every": 1000}})
    with pytest.raises(ValueError, match="unknown key finetune.online_label .*did you mean 'online_labels'"):
        check_config({"finetune": {"online_label": 100}})
    with pytest.raises(ValueError, match="finetune.label_every"):
        check_config({"finetune": {"online_labels": 10, "label_every": 0}})


def test_pipeline_passes_the_label_sections_labeler_to_finetune(tmp_path, monkeypatch):
    from rich.console import Console

    from robot_rl.cli.main import build_parser
    from robot_rl.cli.pipeline_cmd import Pipeline

    cfg = {"label": {"labeler": "scripted", "teacher": {"mistake": 0.1}},
           "finetune": {"env_steps": 300, "online_labels": 20, "label_every": 100}}
    calls: list[list[str]] = []
    monkeypatch.setattr(Pipeline, "_call", lambda self, stage, argv: calls.append(argv))
    Pipeline(cfg, tmp_path, Console(stderr=True))._finetune(False)
    args = build_parser().parse_args(calls[0])
    assert (args.online_labels, args.label_every, args.labeler, args.mistake) == (20, 100, "scripted", 0.1)
    assert args.label_store == str(tmp_path / "labels.sqlite")  # the pipeline's own store


def test_reset_free_forward_rewards_learn_from_online_labels(offline, tmp_path):
    from robot_rl.envs.reset_free import MetaWorldPairBackend
    from robot_rl.rl.reset_free import GroundTruthSuccess, ResetFreeConfig, reset_free_finetune

    close = tmp_path / "close.h5"
    assert main(["collect", "--task", "metaworld/drawer-close-v3", "--episodes", "2", "--episode-length", "30",
                 "--out", str(close)]) == 0
    assert main(["train", "--dataset", str(close), "--steps", "10", "--out", str(tmp_path / "close"), "--device",
                 "cpu", "--set", "iql.hidden=[32,32]", "--set", "log_every=10", "--eval-episodes", "0"]) == 0
    backend = MetaWorldPairBackend("drawer", seed=0)
    source = resolve_reward_source("dataset", str(offline / "d.h5"))
    assert isinstance(source, LearnedReward)
    learner = OnlinePreferences(source, make_labeler("scripted"), OnlineLabelsConfig(
        budget=4, label_every=60, env_steps=180, reward_steps=10), tmp_path / "rf" / "online_labels",
        backend.specs[0], relabels_offline=True)
    signals = (GroundTruthSuccess(backend.specs[0]), GroundTruthSuccess(backend.specs[1]))
    try:
        reset_free_finetune(offline / "iql", tmp_path / "close", backend, signals, ResetFreeConfig(
            steps=180, attempt_time_limit=30, warmup_steps=30, log_every=90, eval_episodes=0, critic_warmup_updates=0,
            updates_per_step=0.1), tmp_path / "rf", rewards=(learner, None))
    finally:
        learner.close()
        backend.close()
    rounds = _rounds(tmp_path / "rf" / "online_labels")
    assert learner.counts["queries"] == 4 and sum(r["pairs"] for r in rounds) == 4
    with LabelStore(offline / "d.h5.labels.sqlite") as store:
        rows = store.labels(dataset=str(tmp_path / "rf" / "online_labels" / ROLLOUTS_FILE))
    assert len(rows) == 4 and all("online" in r.label.provenance for r in rows)
    before = RewardModel.load(offline / "reward" / "reward_model.pt")
    assert not torch.equal(before.layers[0].weight, learner.source.model.layers[0].weight)  # the forward model moved
    logged = [json.loads(line) for line in (tmp_path / "rf" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["forward/labels/queries"] == 4 and "backward/labels/queries" not in logged[-1]


def test_finetune_cli_labels_online_and_a_rerun_into_the_same_folder_asks_nothing(offline, tmp_path):
    out = tmp_path / "cli"
    argv = ["finetune", "--checkpoint", str(offline / "iql"), "--steps", "520", "--warmup", "100",
            "--updates-per-step", "0.05", "--eval-every", "0", "--eval-episodes", "0", "--threads", "1",
            "--online-labels", "4", "--label-every", "260", "--out", str(out)]  # the task card's episode length
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    assert "| online labels | 4 of 4 queries over 1 round(s) (4 asked, 0 from the store" in report
    assert [(r["round"], r["env_step"], r["pairs"]) for r in _rounds(out)] == [(1, 260, 4)]
    assert main(argv) == 0  # again, into the same folder (a fine-tuning run started over)
    assert "(0 asked, 4 from the store" in (out / "report.md").read_text()
    assert [r["reused"] for r in _rounds(out)] == [4]  # the rounds file started over with the run
    with LabelStore(offline / "d.h5.labels.sqlite") as store:
        assert len(store.labels(dataset=str(out / ROLLOUTS_FILE))) == 4


def test_warm_start_keeps_the_model_and_refuses_another_architecture():
    from robot_rl.rewards.model import PreferenceData, RewardModelConfig, RewardModelError, train_reward_model

    rng = np.random.default_rng(0)
    s0, s1 = rng.normal(size=(2, 16, 5, 3)).astype(np.float32)
    a0, a1 = rng.normal(size=(2, 16, 5, 2)).astype(np.float32)
    data = PreferenceData(s0, a0, s1, a1, (s1.sum((1, 2)) > s0.sum((1, 2))).astype(np.float32))
    config = RewardModelConfig(members=2, hidden=(8,), steps=5, batch_size=8)
    model, _ = train_reward_model(data, config)
    shifted = PreferenceData(s0 + 5, a0, s1 + 5, a1, data.labels)  # other states: a fresh model would refit
    warm, _ = train_reward_model(shifted, config, init=model)
    assert torch.equal(warm.state_mean, model.state_mean) and not torch.equal(warm.layers[0].weight,
                                                                              model.layers[0].weight)
    fresh, _ = train_reward_model(shifted, config)
    assert not torch.equal(fresh.state_mean, model.state_mean)
    with pytest.raises(RewardModelError, match="warm start: config changes the model's architecture \\(hidden\\)"):
        train_reward_model(data, RewardModelConfig(members=2, hidden=(4,), steps=1), init=model)


@pytest.mark.slow
def test_pipeline_runs_online_labels_and_a_resumed_finetune_stage_asks_nothing_again(tmp_path):
    import shutil

    import yaml

    quickstart = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
    cfg = yaml.safe_load(quickstart.read_text())
    cfg.update(collect={"episodes": 4, "num_envs": 2}, reward_model={"steps": 20, "hidden": [16, 16]},
               train={"steps": 30, "log_every": 30}, eval={"episodes": 1},
               finetune={"env_steps": 320, "warmup_env_steps": 60, "eval_every": 320, "updates_per_env_step": 0.1,
                         "online_labels": 6, "label_every": 160, "threads": 1})  # 150-step episodes
    cfg["label"].update(pairs=16, segment_length=20)
    config, out = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", "--config", str(config), "--out", str(out)]) == 0
    first = _rounds(out / "finetune")
    assert [(r["env_step"], r["pairs"], r["asked"]) for r in first] == [(160, 6, 6)]  # one round before the end
    with LabelStore(out / "labels.sqlite") as store:  # the pipeline's own store: offline and online labels
        assert len(store.labels(dataset=str(out / "finetune" / ROLLOUTS_FILE))) == 6
        assert store.labels(dataset=str(out / "drawer-open-v3.h5"))
    shutil.rmtree(out / "finetune")  # the fine-tuning stage must run again
    assert main(["pipeline", "--resume", "--out", str(out)]) == 0
    assert [(r["pairs"], r["asked"], r["reused"]) for r in _rounds(out / "finetune")] == [(6, 0, 6)]
