"""``core.config_check``: every config field checked against its annotation and declared range, from any source."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from robot_rl.core.config_check import ConfigError, Range, bounded, check_fields, config_from_dict
from robot_rl.rewards.model import RewardModelConfig
from robot_rl.rewards.model.network import RewardModelError
from robot_rl.rl.finetune import FinetuneConfig
from robot_rl.rl.iql import IQLConfig
from robot_rl.rl.train import TrainConfig


@dataclass(frozen=True)
class Inner:
    rate: float = bounded(0.5, gt=0, le=1)
    sizes: tuple[int, ...] = bounded((8,), ge=1)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Outer:
    name: str
    steps: int = bounded(10, ge=1)
    scale: float | None = bounded(None, gt=0)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(("data", "message"), [
    ({"steps": "abc"}, "steps must be an integer >= 1, got 'abc'"),
    ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
    ({"steps": True}, "steps must be an integer >= 1, got True"),
    ({"steps": 0}, "steps must be >= 1, got 0"),
    ({"scale": -1}, "scale must be > 0, got -1"),
    ({"scale": "x"}, "scale must be a number > 0 or null, got 'x'"),
    ({"flag": "yes"}, "flag must be true or false, got 'yes'"),
    ({"inner": {"rate": 2}}, "inner.rate must be in (0, 1], got 2"),
    ({"inner": {"rate": math.nan}}, "inner.rate must be a number in (0, 1], got nan"),
    ({"inner": {"sizes": "abc"}}, "inner.sizes must be a list of integers >= 1, got 'abc'"),
    ({"inner": {"sizes": [4, 0]}}, "every item of inner.sizes must be >= 1, got [4, 0]"),
    ({"inner": 3}, "inner must be a mapping, got 3"),
    ({"inner": {"rat": 0.1}}, "unknown key inner.rat (did you mean 'rate'?)"),
    ({"stepz": 3}, "unknown key stepz (did you mean 'steps'?)"),
])
def test_a_bad_value_is_one_line_naming_key_value_and_expectation(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(Outer, {"name": "x", **data})
    assert str(e.value) == message or str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_good_values_are_normalized() -> None:
    cfg = config_from_dict(Outer, {"name": "x", "scale": 2, "inner": {"sizes": [4, 4], "rate": 1}})
    assert cfg.scale == 2.0 and isinstance(cfg.scale, float)
    assert cfg.inner == Inner(rate=1.0, sizes=(4, 4))
    assert config_from_dict(Outer, {"name": "x"}) == Outer(name="x")
    with pytest.raises(ConfigError, match="name is required"):
        config_from_dict(Outer, {})


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="steps must be >= 1, got -2"):
        Outer(name="x", steps=-2)
    with pytest.raises(ConfigError, match="expectile must be in \\(0, 1\\), got 2"):
        IQLConfig(expectile=2)
    with pytest.raises(RewardModelError, match="lr must be a number > 0, got 'abc'"):
        RewardModelConfig(lr="abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="env_steps must be >= 1, got 0"):
        FinetuneConfig(env_steps=0)


@pytest.mark.parametrize(("data", "message"), [
    ({"iql": {"batch_size": "abc"}}, "iql.batch_size must be an integer >= 1, got 'abc'"),
    ({"iql": {"hidden": "abc"}}, "iql.hidden must be a list of integers >= 1, got 'abc'"),
    ({"iql": {"actor_lr": "abc"}}, "iql.actor_lr must be a number > 0, got 'abc'"),
    ({"iql": {"expectile": 2}}, "iql.expectile must be in (0, 1), got 2"),
    ({"encoder": {"channels": 0}}, "encoder.channels must be >= 1, got 0"),
    ({"image_size": 8}, "image_size must be >= 16, got 8"),
])
def test_train_configs_name_the_dotted_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"dataset": "d.h5", **data})
    assert str(e.value) == message


def test_a_saved_config_round_trips() -> None:
    cfg = TrainConfig.from_dict({"dataset": "d.h5", "iql": {"hidden": [32, 32]}})
    assert cfg.iql.hidden == (32, 32)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_range_words() -> None:
    assert Range(ge=0, le=1).describe() == "in [0, 1]"
    assert Range(gt=0, lt=1).describe() == "in (0, 1)"
    assert Range(ge=1).describe() == ">= 1"
    assert Range(lt=3).describe() == "< 3"
