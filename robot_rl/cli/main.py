"""``robot-rl``: the command line. Each subcommand lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from robot_rl.cli import (
    calibrate_cmd,
    collect_cmd,
    compare_rewards_cmd,
    eval_cmd,
    export_cmd,
    finetune_cmd,
    import_bag_cmd,
    import_cmd,
    inspect_cmd,
    label_cmd,
    pipeline_cmd,
    relabel_cmd,
    reward_search_cmd,
    sweep_cmd,
    train_cmd,
    train_reward_cmd,
    train_success_cmd,
)

COMMANDS = {
    "collect": collect_cmd, "inspect": inspect_cmd, "label": label_cmd, "train-reward": train_reward_cmd,
    "relabel": relabel_cmd, "train": train_cmd, "finetune": finetune_cmd, "eval": eval_cmd, "pipeline": pipeline_cmd,
    "calibrate": calibrate_cmd, "import-bag": import_bag_cmd, "reward-search": reward_search_cmd,
    "train-success": train_success_cmd, "compare-rewards": compare_rewards_cmd,
    "import": import_cmd, "export": export_cmd, "sweep": sweep_cmd,
}


class UserError(Exception):
    """A problem with the user's input; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl", description="Unlabeled robot data plus one task sentence in, a working policy out.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from robot_rl.data.errors import DatasetError
    from robot_rl.llm.errors import LLMError
    from robot_rl.rewards.code_reward import RewardCodeError
    from robot_rl.rewards.store import LabelStoreError

    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except (UserError, DatasetError, ValueError, FileExistsError, FileNotFoundError, LLMError, RewardCodeError,
            LabelStoreError) as e:
        print(f"robot-rl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robot-rl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
