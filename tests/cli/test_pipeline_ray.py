"""A pipeline config's ``ray:`` section: checked like every other key, passed to the stages that run on Ray (collect
and relabel as ``--ray-address``/``--ray-workers``, the VLM label stage as a ``RayVLMLabeler``), and not part of
any stage's key (the results are the same with or without Ray, so adding it reruns nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from robot_rl.cli import pipeline_cmd
from robot_rl.cli.pipeline_config import check_config
from robot_rl.cli.pipeline_state import stage_keys
from robot_rl.rewards import jobs
from robot_rl.scale.label import RayVLMLabeler

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "drawer-open-tiny.h5"


def _cfg(**ray: Any) -> dict[str, Any]:
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg["ray"] = ray
    return cfg


@pytest.mark.parametrize(("ray", "message"), [
    ({"adress": "local"}, "unknown key ray.adress (did you mean 'address'?)"),
    ({"address": "local", "workers": 0}, "ray.workers must be >= 1"),
    ({"address": "local", "workers": "two"}, "ray.workers must be an integer"),
    ({"workers": 2}, "ray.address is required"),
    ({"address": 6379}, "ray.address must be"),
])
def test_a_bad_ray_section_is_one_line(ray: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="pipeline config: ") as e:
        check_config(_cfg(**ray))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_ray_section_reaches_collect_label_and_relabel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(address="127.0.0.1:6379", workers=2)
    check_config(cfg)
    assert stage_keys(cfg) == stage_keys({k: v for k, v in cfg.items() if k != "ray"})
    calls: list[list[str]] = []
    monkeypatch.setattr(pipeline_cmd.Pipeline, "_call", lambda self, stage, argv: calls.append(argv))
    pipeline = pipeline_cmd.Pipeline(cfg, tmp_path, Console(stderr=True))
    pipeline._collect(False)
    pipeline._relabel(False)
    for argv in calls:
        assert argv[argv.index("--ray-address") + 1] == "127.0.0.1:6379"
        assert argv[argv.index("--ray-workers") + 1] == "2"
    labelers: list[Any] = []

    def capture(dataset: str, labeler: Any, *args: Any, **kwargs: Any) -> Any:
        labelers.append(labeler)
        raise KeyboardInterrupt  # stop before anything is asked

    monkeypatch.setattr(jobs, "label_dataset", capture)
    pipeline.dataset = tmp_path / "sample.h5"
    shutil.copy(SAMPLE, pipeline.dataset)
    pipeline.cfg["label"] = {**cfg["label"], "labeler": "vlm", "vlm": {"url": "http://127.0.0.1:9/v1", "model": "m",
                                                                        "image_size": 32}}
    with pytest.raises(KeyboardInterrupt):
        pipeline._label(False)
    assert pipeline.dataset.exists(), "the label stage must not remove the dataset it labels"
    ray_labeler = labelers[0]
    assert isinstance(ray_labeler, RayVLMLabeler)
    assert (ray_labeler.address, ray_labeler.workers, ray_labeler.image_size) == ("127.0.0.1:6379", 2, 32)
    assert ray_labeler.identity() == ray_labeler.local.identity() and ray_labeler.identity()["labeler"] == "vlm"
    pipeline.cfg = _cfg()  # no ray section: no flags
    calls.clear()
    pipeline._collect(False)
    assert "--ray-address" not in calls[0]
