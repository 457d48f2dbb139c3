"""``robot-rl actor``: run the policy on the robot over DDS at the control rate, stream every transition to
``robot-rl learner`` (spooled on disk until acked), act on the weights it pushes; a teleop input overrides the policy
while held (interventions, recorded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_rl.cli.config_flags import add_config_flags, build_config
from robot_rl.cli.help_text import command_help
from robot_rl.cli.robot_learning import add_dds_flags, load_spec, stop_signal


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from robot_rl.apps.learning_config import ActorConfig

    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--spec", type=Path, required=True,
                   help="the policy's EnvSpec: a JSON file, or a run folder (e.g. the offline run the learner starts "
                        "from)")
    p.add_argument("--spool", type=Path, required=True,
                   help="folder for transitions not yet acked by the learner (and the last weights)")
    p.add_argument("--record", type=Path, default=None, help="also write every episode here (HDF5, appended)")
    p.add_argument("--joints", default="", help="comma-separated joint names of the state, in order (default: "
                   "s0..s{D-1}, what robot_rl.envs.sim_robot publishes)")
    p.add_argument("--status", type=Path, default=None, help="write a JSON status here after every episode")
    add_dds_flags(p)
    p.set_defaults(config_flags=add_config_flags(p, ActorConfig))


def run(args: argparse.Namespace) -> int:
    import torch

    from robot_rl.apps.actor import Actor
    from robot_rl.apps.learning_config import ActorConfig

    cfg = build_config(ActorConfig, args.config_flags, args, "actor")
    if args.threads:
        torch.set_num_threads(args.threads)
    from robot_rl.cli.outputs import check_output

    check_output(args.spool, "--spool", "folder")
    if args.record is not None:
        check_output(args.record, "--record", "file")
    spec = load_spec(args.spec)
    joints = tuple(j for j in args.joints.split(",") if j)
    if joints and len(joints) != spec.state_dim:
        raise ValueError(f"--joints names {len(joints)} joints, the spec's state has {spec.state_dim} values")
    stop = stop_signal(args.duration)
    actor = Actor(spec, cfg, args.spool, args.record, args.domain, args.namespace, joints)
    try:
        actor.run(stop, args.status)
        left = actor.drain(5.0)
        if left:
            print(f"robot-rl actor: {left} batches not acked yet; they stay in {args.spool} and go out next start")
    finally:
        actor.close()
    return 0
