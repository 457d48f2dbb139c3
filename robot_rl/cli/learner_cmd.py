"""``robot-rl learner``: train on the transitions ``robot-rl actor`` streams over DDS (IQL or RLPD, continuing an
offline run; interventions also join the demonstration data) and push the policy's weights back at a set rate;
checkpoints and resumes, and nothing an actor sent is lost across a restart."""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_rl.cli.config_flags import add_config_flags, build_config
from robot_rl.cli.help_text import command_help
from robot_rl.cli.robot_learning import add_dds_flags, stop_signal


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from robot_rl.apps.learning_config import LearnerConfig
    from robot_rl.rl.algorithms import ALGORITHMS

    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder of the offline run to continue")
    p.add_argument("--out", type=Path, required=True, help="run folder (resumes when it holds checkpoints)")
    add_dds_flags(p)
    online = tuple(name for name, entry in ALGORITHMS.items() if entry.online)
    p.set_defaults(config_flags=add_config_flags(p, LearnerConfig, choices={"algo": online}))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the checkpoint's training config, e.g. --set rlpd.utd=4 (repeatable; "
                        "a resumed run keeps its own)")


def run(args: argparse.Namespace) -> int:
    import torch

    from robot_rl.apps.learner import Learner
    from robot_rl.apps.learning_config import LearnerConfig
    from robot_rl.cli.outputs import check_output
    from robot_rl.cli.overrides import apply_overrides

    cfg = build_config(LearnerConfig, args.config_flags, args, "learner",
                       {**args.config_flags.values(args), "train_overrides": apply_overrides({}, args.set)})
    if args.threads:
        torch.set_num_threads(args.threads)
    out = check_output(args.out, "--out", "folder")
    stop = stop_signal(args.duration)
    learner = Learner(args.checkpoint, out, cfg, args.domain, args.namespace)
    try:
        learner.run(stop)
    finally:
        learner.close()
    return 0
