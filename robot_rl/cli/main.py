"""``robot-rl``: the command line. Each subcommand lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from robot_rl.cli import (
    actor_cmd,
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
    learner_cmd,
    pipeline_cmd,
    relabel_cmd,
    reward_search_cmd,
    sweep_cmd,
    train_cmd,
    train_reward_cmd,
    train_success_cmd,
)
from robot_rl.cli.errors import (
    DEBUG_HINT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    UsageError,
    UserError,  # noqa: F401 - commands and tests raise it from here
    describe,
    one_line,
    output_path,
)

COMMANDS = {
    "collect": collect_cmd, "inspect": inspect_cmd, "label": label_cmd, "train-reward": train_reward_cmd,
    "relabel": relabel_cmd, "train": train_cmd, "finetune": finetune_cmd, "eval": eval_cmd, "pipeline": pipeline_cmd,
    "calibrate": calibrate_cmd, "import-bag": import_bag_cmd, "reward-search": reward_search_cmd,
    "train-success": train_success_cmd, "compare-rewards": compare_rewards_cmd,
    "import": import_cmd, "export": export_cmd, "sweep": sweep_cmd, "actor": actor_cmd, "learner": learner_cmd,
}


class _Parser(argparse.ArgumentParser):
    """argparse's refusals (unknown flag, a value of the wrong type) as ``UsageError``: ``main`` prints them in the one
    line every error gets, instead of argparse's usage block and its own exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="robot-rl", description="Unlabeled robot data plus one task sentence in, a working policy out.")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the traceback (before the command's name: robot-rl --debug "
                             "train ...)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
        sub.choices[name].add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                       help="on an error, also print the traceback")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr, ``robot-rl CMD: error: ...``, and exit status 2 (the
    traceback too with ``--debug``); Ctrl-C is 130. docs/cli_errors.md says what is promised."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        words = list(sys.argv[1:] if argv is None else argv)
        command = next((w for w in words if w in COMMANDS), None)
        prog = f"robot-rl {command}" if e.prog == "robot-rl" and command else e.prog  # unrecognized arguments
        text = one_line(str(e)).replace("(see robot-rl --help)", f"(see {prog} --help)")
        print(f"{prog}: error: {text}", file=sys.stderr)
        return EXIT_ERROR
    debug = bool(args.debug)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print(f"robot-rl {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as e:  # a nested parser (calibrate KIND), or a command's own check of its flags
        print(f"{getattr(e, 'prog', 'robot-rl ' + args.command)}: error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - the last resort: one line, never a traceback unless asked for
        if debug:
            traceback.print_exc()
        line, unexpected = describe(e, output_path(args))
        print(f"robot-rl {args.command}: error: {line}{' ' + DEBUG_HINT if unexpected and not debug else ''}",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
