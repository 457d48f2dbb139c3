"""Flags made from config dataclasses: names, types, defaults and help come from the fields."""

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from robot_rl.cli.config_flags import GIVEN, add_config_file_flags, add_config_flags, config_dict, field_docs, plain_doc
from robot_rl.cli.main import build_parser
from robot_rl.rewards.model import RewardModelConfig
from robot_rl.rewards.success import SuccessConfig
from robot_rl.rl.finetune import FinetuneConfig
from robot_rl.rl.train import TrainConfig


@dataclass(frozen=True)
class Toy:
    """A config for the tests."""

    rate: float = 0.5
    """Learning rate, in 1/s (50% is a lot)."""
    steps: int = 10
    name: str | None = None
    """Run name (default: made up)."""
    mode: Literal["fast", "slow"] = "fast"
    """How to go."""
    hidden: tuple[int, ...] = (4, 4)
    """Layer widths."""
    verbose: bool = False
    """Say more."""
    nested: dict = field(default_factory=dict)


def subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def config_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    flags = parser.get_default("config_flags")
    return {name: next(a for a in parser._actions if a.dest == dest) for name, dest in flags.dests.items()}


@pytest.mark.parametrize(("command", "cls", "fields"), [
    ("train", TrainConfig, {"dataset", "algo", "steps", "seed", "device", "reward_key", "obs", "camera",
                            "image_size"}),
    ("finetune", FinetuneConfig, {"env_steps", "offline_ratio", "updates_per_env_step", "warmup_env_steps", "threads",
                                  "eval_every", "eval_episodes", "seed", "algo", "online_labels", "label_every"}),
    ("train-reward", RewardModelConfig, {"obs", "steps"}),
    ("train-success", SuccessConfig, {"obs", "camera", "image_size", "steps", "threshold", "preference_negatives"}),
])
def test_every_command_flag_has_the_dataclass_default_and_the_field_doc(command, cls, fields):
    parser = subparser(command)
    actions = config_actions(parser)
    assert set(actions) == fields
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    docs = field_docs(cls)
    for name, action in actions.items():
        want = None if defaults[name] is dataclasses.MISSING else defaults[name]
        assert action.default == want, name
        if name in docs:
            assert action.help.replace("%%", "%").startswith(plain_doc(docs[name])), name


def test_renamed_finetune_flags_keep_their_names_and_build_the_config():
    args = build_parser().parse_args(["finetune", "--checkpoint", "x", "--steps", "500", "--warmup", "7",
                                      "--updates-per-step", "2", "--offline-ratio", "0.5"])
    assert (args.steps, args.warmup, args.updates_per_step) == (500, 7, 2.0)
    cfg = FinetuneConfig(**args.config_flags.values(args))
    assert (cfg.env_steps, cfg.warmup_env_steps, cfg.updates_per_env_step, cfg.offline_ratio) == (500, 7, 2.0, 0.5)
    assert cfg.eval_every == FinetuneConfig.eval_every and cfg.seed == FinetuneConfig.seed


def test_a_new_field_becomes_a_flag_with_its_type_default_and_doc():
    parser = argparse.ArgumentParser()
    flags = add_config_flags(parser, Toy)
    assert set(flags.dests) == {"rate", "steps", "name", "mode", "hidden", "verbose"}  # nested: --set only
    actions = {a.dest: a for a in parser._actions}
    assert actions["rate"].help == "Learning rate, in 1/s (50%% is a lot). (default: 0.5)"
    assert actions["name"].help == "Run name (default: made up)."  # the doc says the default already
    assert actions["steps"].help == "(default: 10)"  # no doc
    assert actions["mode"].choices == ["fast", "slow"]
    args = parser.parse_args(["--rate", "0.1", "--steps", "3", "--name", "a", "--mode", "slow", "--hidden", "8",
                              "16", "--verbose"])
    assert Toy(**flags.values(args)) == Toy(rate=0.1, steps=3, name="a", mode="slow", hidden=(8, 16), verbose=True)
    assert Toy(**flags.values(parser.parse_args([]))) == Toy()
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "medium"])
    parser.format_help()  # the % in a doc does not break the help

    renamed = argparse.ArgumentParser()
    add_config_flags(renamed, Toy, ["steps"], rename={"steps": "iterations"})
    assert renamed.parse_args(["--iterations", "4"]).iterations == 4


def test_yaml_then_given_flags_then_set(tmp_path):
    parser = argparse.ArgumentParser()
    flags = add_config_flags(parser, Toy, ["rate", "steps", "mode"])
    add_config_file_flags(parser, Toy, "rate=1")
    config = tmp_path / "toy.yaml"
    config.write_text("rate: 0.3\nsteps: 20\nmode: slow\n")
    # a flag left at its default does not override the YAML; a given one does, even when it equals the default
    args = parser.parse_args(["--config", str(config), "--steps", "10", "--set", "nested.a=1"])
    assert getattr(args, GIVEN) == {"steps"}
    assert config_dict(flags, args) == {"rate": 0.3, "steps": 10, "mode": "slow", "nested": {"a": 1}}
    args = parser.parse_args(["--config", str(config), "--rate", "0.9", "--set", "rate=2"])
    assert config_dict(flags, args)["rate"] == 2


def test_train_cli_given_flags_override_the_yaml_but_defaults_do_not(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("steps: 77\nseed: 3\n")
    args = build_parser().parse_args(["train", "--out", "o", "--dataset", "d.h5", "--config", str(config),
                                      "--seed", "0", "--set", "iql.temperature=10"])
    assert config_dict(args.config_flags, args) == {"steps": 77, "seed": 0, "dataset": "d.h5",
                                                    "iql": {"temperature": 10}}


def test_unsupported_field_types_say_so():
    @dataclass
    class Bad:
        on: bool = True

    with pytest.raises(TypeError, match="Bad.on"):
        add_config_flags(argparse.ArgumentParser(), Bad, ["on"])
