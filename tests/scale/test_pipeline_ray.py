"""A pipeline config's ``ray:`` section on the two-node loopback cluster: the quickstart's collect, label,
train-reward and relabel stages (tiny counts) give the same dataset, labels and relabeled rewards as without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rich.console import Console

from robot_rl.cli.pipeline_cmd import Pipeline
from robot_rl.data import Dataset
from robot_rl.scale import collect as scale_collect
from robot_rl.scale import relabel as scale_relabel

pytestmark = pytest.mark.slow
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def _run(out: Path, ray: dict[str, object] | None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg.update(collect={"episodes": 4, "num_envs": 2}, reward_model={"steps": 10, "hidden": [16]})
    cfg["label"].update(pairs=12, segment_length=10)
    if ray is not None:
        cfg["ray"] = ray
    out.mkdir()
    pipeline = Pipeline(cfg, out, Console(stderr=True))
    for stage in (pipeline._collect, pipeline._label, pipeline._train_reward, pipeline._relabel):
        stage(False)
    with Dataset(pipeline.dataset) as ds:
        return {n: (ep.states, ep.reward_labels["ground_truth"][0], ep.reward_labels["reward_model"][0])
                for n in ds.episode_names for ep in [ds.load_episode(n)]}


def test_the_ray_section_gives_the_same_results(ray_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = _run(tmp_path / "local", None)
    used: list[str] = []
    real_collector, real_relabel = scale_collect.RayCollector, scale_relabel.relabel_on_ray

    def collector(*args: Any, **kwargs: Any) -> Any:
        used.append("collect")
        return real_collector(*args, **kwargs)

    def relabel(*args: Any, **kwargs: Any) -> Any:
        used.append("relabel")
        return real_relabel(*args, **kwargs)

    monkeypatch.setattr(scale_collect, "RayCollector", collector)
    monkeypatch.setattr(scale_relabel, "relabel_on_ray", relabel)
    got = _run(tmp_path / "ray", {"address": ray_cluster.address, "workers": 2})
    assert used == ["collect", "relabel"]  # both stages ran on the cluster
    assert list(got) == list(want)
    for name, (states, truth, learned) in want.items():
        np.testing.assert_array_equal(got[name][0], states)
        np.testing.assert_array_equal(got[name][1], truth)
        np.testing.assert_allclose(got[name][2], learned, rtol=1e-5, atol=1e-6)
