import pytest

from robot_rl.core import EnvCheckError, check_env
from tests.core.toy_env import PointEnv


def test_conforming_env_passes():
    check_env(PointEnv(num_envs=3))


@pytest.mark.parametrize("broken, message", [
    ("unseeded", "seeding is not deterministic"),
    ("accept_nan", "NaN action did not raise"),
    ("no_final_obs", "no 'final_obs'"),
    ("bad_restore", "restore is incomplete"),
])
def test_each_broken_rule_is_caught(broken, message):
    with pytest.raises(EnvCheckError, match=message):
        check_env(PointEnv(num_envs=2, **{broken: True}))


def test_not_an_env():
    with pytest.raises(EnvCheckError, match="does not implement RobotEnv"):
        check_env(object())  # type: ignore[arg-type]
