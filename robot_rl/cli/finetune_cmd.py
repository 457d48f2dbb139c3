"""``robot-rl finetune``: continue an offline IQL run online in a sim task, mixing offline and new data (``--algo
rlpd`` or ``calql``: that learner started from the run's data and actor);
``--reset-free``: fine-tune a forward and a backward policy in turns without resets."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.config_flags import add_config_flags, build_config
from robot_rl.cli.help_text import command_help
from robot_rl.cli.label_cmd import add_labeler_flags, labeler_from_args
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress
from robot_rl.cli.robot_learning import load_spec
from robot_rl.core import EnvSpec, SuccessSignal
from robot_rl.rewards.signals import signal_help
from robot_rl.rewards.sources import source_help

if TYPE_CHECKING:
    from robot_rl.apps.robot_reset_free import RobotLink
    from robot_rl.rewards.online import OnlinePreferences

FINETUNE_FLAGS = ("env_steps", "offline_ratio", "updates_per_env_step", "warmup_env_steps", "eval_every", "threads",
                  "eval_episodes", "seed", "algo", "online_labels", "label_every")
"""FinetuneConfig fields with a flag (reset-free fine-tuning reads the same flags)."""
FINETUNE_RENAME = {"env_steps": "steps", "updates_per_env_step": "updates_per_step", "warmup_env_steps": "warmup"}
ROBOT_FLAGS = ("rate_hz", "max_obs_age_s", "teleop", "teleop_topic", "teleop_axes", "teleop_scale", "deadman_button",
               "teleop_deadzone", "teleop_timeout_s")
"""``robot-rl actor``'s robot and teleop settings that ``finetune --reset-free --robot`` shares."""


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from robot_rl.apps.learning_config import ActorConfig
    from robot_rl.rl.algorithms import ALGORITHMS
    from robot_rl.rl.finetune import FinetuneConfig

    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--checkpoint", type=Path, default=None, help="run folder of an offline IQL run")
    p.add_argument("--task", default=None, help="sim task (default: the dataset's)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: CHECKPOINT-finetune)")
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--env-workers", type=int, default=0,
                   help="step the envs in this many worker processes while the learner updates (at most "
                        "--num-envs; default 0: in this process, which measured as fast on 2 cores)")
    online = tuple(name for name, entry in ALGORITHMS.items() if entry.online)
    p.set_defaults(config_flags=add_config_flags(p, FinetuneConfig, FINETUNE_FLAGS, rename=FINETUNE_RENAME,
                                                 choices={"algo": online}))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the checkpoint's training config, e.g. --set rlpd.utd=4 (repeatable)")
    p.add_argument("--reward", default="dataset",
                   help=f"reward of new transitions (default: dataset): {source_help(online=True)}")
    g = p.add_argument_group("online preference labels (--online-labels N)")
    g.add_argument("--label-selection", choices=("disagreement", "entropy", "uniform"), default="disagreement",
                   help="how each round's pairs are picked from recent rollouts (default: the reward ensemble's "
                        "disagreement)")
    g.add_argument("--label-segment-length", type=int, default=None,
                   help="steps per segment (default: the offline labels', else 50; 1 for vlm)")
    g.add_argument("--label-store", default=None,
                   help="label store (default: the one the reward model was trained from)")
    g.add_argument("--reward-steps", type=int, default=None,
                   help="training steps of each warm-started retraining of the reward (default: the model's own)")
    add_labeler_flags(p)
    g = p.add_argument_group("reset-free (--reset-free)")
    g.add_argument("--reset-free", action="store_true",
                   help="alternate a forward and a backward policy in one world without resets")
    g.add_argument("--forward", type=Path, default=None, help="run folder of the forward task's offline IQL run")
    g.add_argument("--backward", type=Path, default=None, help="run folder of the backward task's offline IQL run")
    g.add_argument("--task-pair", default="drawer",
                   help="drawer (drawer-open-v3 / drawer-close-v3), door (door-open-v3 / door-close-v3), "
                        "mjx-drawer (mjx/drawer-open / mjx/drawer-close) or FORWARD_TASK:BACKWARD_TASK (MetaWorld "
                        "tasks that share one model)")
    g.add_argument("--success", default=None,
                   help=f"success signal of both directions: {signal_help()}; required unless "
                        "--forward-success and --backward-success are given")
    g.add_argument("--forward-success", default=None, help="success signal of the forward direction")
    g.add_argument("--backward-success", default=None, help="success signal of the backward direction")
    g.add_argument("--threshold", type=float, default=None,
                   help="success threshold of classifier signals (default: each classifier's own)")
    g.add_argument("--attempt-steps", type=int, default=None,
                   help="time limit of one attempt (default: each task's episode length)")
    g.add_argument("--stuck-attempts", type=int, default=4,
                   help="attempts in a row without progress before an intervention (default 4)")
    g.add_argument("--critic-warmup", type=int, default=2000,
                   help="value/critic updates on the success-relabeled offline data before acting (default 2000; "
                        "0 let forward success fall 60%% -> 20-25%% on the drawer pair); also the critic-only "
                        "updates on the offline data of --algo rlpd / calql started from another learner's checkpoint")
    g.add_argument("--control-hz", type=float, default=None,
                   help="control rate for interventions per hour (default: the backend's; MetaWorld 80 Hz)")
    g.add_argument("--home", action="store_true",
                   help="between attempts, move the arm back to its start pose (objects stay where they are), so "
                        "attempts start where evaluation does (simulated pairs)")
    g.add_argument("--soft-reward", action="store_true",
                   help="reward each step with the success signal's probability (times the success reward) instead "
                        "of 1[p >= threshold]; attempts still end on claims")
    g.add_argument("--verify-claims", type=int, default=0, metavar="N",
                   help="a teacher checks up to N success claims per direction: a rejected claim earns nothing, the "
                        "attempt goes on, and a state classifier retrains on the answer (default 0: off)")
    g.add_argument("--claim-teacher", choices=("scripted", "human"), default=None,
                   help="who answers --verify-claims: scripted (simulator ground truth) or human (a yes/no prompt "
                        "here; default with --robot)")
    g = p.add_argument_group("reset-free on a robot (--reset-free --robot), over DDS with ROS 2's wire conventions")
    g.add_argument("--robot", action="store_true",
                   help="act on the robot behind ROS 2 topics (JointState in, commands out, through the safety "
                        "gate) instead of a simulated --task-pair; when the loop is stuck a person puts the scene "
                        "right with the --teleop input, and every executed step goes to --record (needs the dds "
                        "extra)")
    g.add_argument("--record", type=Path, default=None,
                   help="HDF5 file that every step the robot executed is appended to (--robot; required)")
    g.add_argument("--joints", default="", help="comma-separated joint names of the state, in order (default: "
                   "s0..s{D-1}, what robot_rl.envs.sim_robot publishes)")
    g.add_argument("--domain", type=int, default=None, help="DDS domain id (default: ROS_DOMAIN_ID, else 0)")
    g.add_argument("--namespace", default="", help="ROS 2 namespace of the robot's topics")
    g.add_argument("--settle-s", type=float, default=0.5,
                   help="the person has let go of the teleop input this long: the loop resumes (default 0.5)")
    g.add_argument("--takeover-timeout-s", type=float, default=120.0,
                   help="nobody took over within this long after a call for help: stop with an error (default 120)")
    p.set_defaults(robot_flags=add_config_flags(g, ActorConfig, ROBOT_FLAGS))


def run(args: argparse.Namespace) -> int:
    if args.robot and not args.reset_free:
        raise ValueError("--robot works with --reset-free (fine-tuning with resets runs in simulation)")
    if args.reset_free:
        return run_reset_free(args)
    if args.checkpoint is None:
        raise ValueError("--checkpoint RUN_DIR is required (or --reset-free with --forward and --backward)")
    from robot_rl.cli.eval_cmd import evaluate_run
    from robot_rl.core.reward_protocols import camera_input
    from robot_rl.envs import make_env
    from robot_rl.nn.checkpoint import load_checkpoint
    from robot_rl.rewards.sources import resolve_reward_source
    from robot_rl.rl.finetune import FinetuneConfig, finetune

    console = Console(stderr=True)
    from robot_rl.cli.overrides import apply_overrides

    cfg = build_config(FinetuneConfig, args.config_flags, args, "finetune",
                       {**args.config_flags.values(args), "log_every": max(1, min(1000, args.steps)),
                        "critic_warmup": args.critic_warmup, "train_overrides": apply_overrides({}, args.set)})
    if args.num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {args.num_envs}")
    if not 0 <= args.env_workers <= args.num_envs:
        raise ValueError(f"--env-workers must be between 0 and --num-envs ({args.num_envs}), got {args.env_workers}")
    out = check_output(args.out or Path(f"{args.checkpoint}-finetune"), "--out", "folder")
    payload, _ = load_checkpoint(args.checkpoint)
    dataset = payload["config"]["dataset"]
    task = args.task or EnvSpec.from_json(payload["env_spec"]).name
    reward = resolve_reward_source(args.reward, dataset)
    console.print(f"fine-tuning {args.checkpoint} on {task}; new transitions rewarded by '{reward.name}'")
    frames = camera_input(reward)  # an image reward model or CLIP: the env renders its camera at every step
    if frames is not None:
        console.print(f"rendering camera '{frames[0]}' at {frames[1]}x{frames[1]} px every step for the reward")
    env = make_env(task, num_envs=args.num_envs, workers=args.env_workers,
                   cameras=(frames[0],) if frames else (), image_size=(frames[1],) * 2 if frames else (128, 128))
    learner = None
    try:
        if cfg.online_labels:
            learner = online_labels(args, reward, cfg.online_labels, cfg.label_every, args.steps, cfg.seed, out,
                                    env.spec, payload["config"])
            reward = learner
            console.print(f"online labels: {cfg.online_labels} queries by '{args.labeler}' every "
                          f"{cfg.label_every} env steps, store {learner.store}")
    except BaseException:
        env.close()
        raise
    start = time.time()
    columns = (TextColumn("[bold]finetune"), BarColumn(), MofNCompleteColumn(), TextColumn("env steps"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("finetune", total=args.steps, info="")

            def on_log(step: int, m: dict[str, float]) -> None:
                info = f"return {m.get('train/return_mean', float('nan')):.0f}"
                if "eval/success_rate" in m:
                    info += f", eval success {m['eval/success_rate']:.0%}"
                progress.update(bar, completed=step, info=info)

            finetune(args.checkpoint, env, reward, cfg, out, on_log=on_log, learner=learner)
    finally:
        env.close()
        if learner is not None:
            learner.close()
    console.print(f"fine-tuned for {args.steps} env steps in {time.time() - start:.0f} s -> {out}")
    algo = load_checkpoint(out)[0]["algo"]
    evaluate_run(out, task, args.eval_episodes, console,
                 title=f"{algo.upper()} fine-tuned online from {args.checkpoint}",
                 extra={"checkpoint": str(args.checkpoint), "reward": reward.name, "env steps": args.steps,
                        "algo": algo, **({} if learner is None else learner.summary())})
    return 0


def online_labels(args: argparse.Namespace, reward: object, budget: int, every: int, steps: int, seed: int,
                  out: Path, spec: EnvSpec, train_config: dict) -> OnlinePreferences:
    """The online preference loop of ``--online-labels`` around the learned reward ``reward``, its labeler from
    the labeler flags (those of ``robot-rl label``); ``train_config``: the offline run's training config."""
    from robot_rl.rewards.online import OnlineLabelsConfig, OnlinePreferences, label_store_of, rewards_came_from
    from robot_rl.rewards.sources import LearnedReward

    if not isinstance(reward, LearnedReward):
        raise ValueError(f"--online-labels retrains a learned reward; the reward here is "
                         f"'{getattr(reward, 'name', reward)}': pass --reward reward-model:RUN_DIR (or fine-tune a "
                         "run whose dataset a reward model relabeled)")
    store = args.label_store or label_store_of(reward)
    if store is None:
        raise ValueError(f"{reward.path}: no reward_config.yaml says which label store it was trained from; pass "
                         "--label-store FILE")
    dataset = str(train_config["dataset"])
    cfg = OnlineLabelsConfig(budget=budget, label_every=every, env_steps=steps, seed=seed,
                             segment_length=args.label_segment_length, selection=args.label_selection,
                             reward_steps=args.reward_steps, camera=args.camera, image_size=args.image_size)
    labeler = labeler_from_args(args, dataset, store)
    relabels = rewards_came_from(dataset, str(train_config.get("reward_key", "rewards")), reward)
    return OnlinePreferences(reward, labeler, cfg, out, spec, store, relabels_offline=relabels)


def check_robot_flags(args: argparse.Namespace) -> None:
    """``--robot``'s flags, checked before anything is opened (one line each)."""
    if args.record is None:
        raise ValueError("--reset-free --robot needs --record FILE.h5: every step the robot executes is kept")
    check_output(args.record, "--record", "file")
    if args.robot_flags.values(args)["teleop"] == "none":
        raise ValueError("--reset-free --robot needs --teleop twist|joy: a person's teleop input is how the scene is "
                         "put right when the loop is stuck")
    specs = [load_spec(getattr(args, k)) for k in ("forward", "backward")]
    if (specs[0].state_dim, specs[0].action.dim) != (specs[1].state_dim, specs[1].action.dim):
        raise ValueError(f"--forward {args.forward} and --backward {args.backward} act on different robots: state "
                         f"{specs[0].state_dim} / {specs[1].state_dim} values, action {specs[0].action.dim} / "
                         f"{specs[1].action.dim}")
    joints = [j for j in args.joints.split(",") if j]
    if joints and len(joints) != specs[0].state_dim:
        raise ValueError(f"--joints names {len(joints)} joints, the policy's state has {specs[0].state_dim} values")


def open_robot(args: argparse.Namespace) -> RobotLink:
    """The robot of ``--robot``: DDS participant, ``RosEnv`` behind the gate, teleop, recorder."""
    from robot_rl.apps.learning_config import ActorConfig
    from robot_rl.apps.robot_reset_free import RobotLink

    cfg = build_config(ActorConfig, args.robot_flags, args, "robot")
    teleop = cfg.teleop_config()
    assert teleop is not None  # check_robot_flags
    return RobotLink(load_spec(args.forward), args.record, teleop, cfg.rate_hz, cfg.max_obs_age_s, args.domain,
                     args.namespace, tuple(j for j in args.joints.split(",") if j))


def verified_signals(signals: tuple[SuccessSignal, SuccessSignal], names: tuple[str, ...], args: argparse.Namespace,
                     console: Console) -> tuple[SuccessSignal, SuccessSignal]:
    """``--verify-claims N``: both success signals wrapped in ``VerifiedSuccess`` with the ``--claim-teacher``;
    without it, ``signals`` as they are."""
    from robot_rl.rewards.success.verify import VerifiedSuccess, VerifyConfig, make_claim_teacher

    if args.verify_claims < 0:
        raise ValueError(f"--verify-claims N: the claims a teacher checks per direction, >= 0 (0: off); got "
                         f"{args.verify_claims}")
    if not args.verify_claims:
        return signals
    kind = args.claim_teacher or ("human" if args.robot else "scripted")
    if kind == "scripted" and args.robot:
        raise ValueError("--claim-teacher scripted reads simulator ground truth, which a robot does not have; use "
                         "--claim-teacher human")
    config = VerifyConfig(budget=args.verify_claims, seed=args.seed)
    console.print(f"claims verified: up to {args.verify_claims} per direction, answered by '{kind}'")
    return (VerifiedSuccess(signals[0], make_claim_teacher(kind, seed=args.seed), config, names[0]),
            VerifiedSuccess(signals[1], make_claim_teacher(kind, seed=args.seed + 1), config, names[1]))


def run_reset_free(args: argparse.Namespace) -> int:
    from robot_rl.apps.robot_reset_free import robot_backend
    from robot_rl.envs.reset_free import make_pair_backend
    from robot_rl.rewards.signals import resolve_success_signal
    from robot_rl.rl.reset_free import ResetFreeBackend, ResetFreeConfig, reset_free_finetune
    from robot_rl.rl.reset_free_report import DIRECTIONS, write_report

    if args.algo not in (None, "iql"):
        raise ValueError(f"--reset-free fine-tunes IQL only; --algo {args.algo} is for fine-tuning with resets")
    missing = [f"--{k}" for k in DIRECTIONS if getattr(args, k) is None]
    if missing:
        raise ValueError(f"--reset-free needs {' and '.join(missing)} RUN_DIR (offline IQL runs of the two tasks)")
    for k in DIRECTIONS:
        if not Path(getattr(args, k)).is_dir():
            raise FileNotFoundError(f"--{k} {getattr(args, k)}: no such run folder")
    check_output(args.out or Path(f"{args.forward}-reset-free"), "--out", "folder")
    if args.robot:
        check_robot_flags(args)
    console = Console(stderr=True)
    cfg = ResetFreeConfig(steps=args.steps, attempt_time_limit=args.attempt_steps, stuck_attempts=args.stuck_attempts,
                          offline_ratio=ResetFreeConfig.offline_ratio if args.offline_ratio is None
                          else args.offline_ratio, updates_per_step=args.updates_per_step,
                          warmup_steps=args.warmup, log_every=min(1000, args.steps),
                          eval_every=args.eval_every if args.eval_every < args.steps else 0,
                          eval_episodes=args.eval_episodes, control_hz=args.control_hz, seed=args.seed,
                          critic_warmup_updates=args.critic_warmup, home=args.home,
                          soft_reward=args.soft_reward)
    out = args.out or Path(f"{args.forward}-reset-free")
    link = None
    backend: ResetFreeBackend
    if args.robot:
        link = open_robot(args)
        backend, _ = robot_backend(link.env, link.teleop, args.settle_s, args.takeover_timeout_s)
        if args.attempt_steps is None:  # the robot's env never ends an episode: the offline task's length
            cfg = dataclasses.replace(cfg, attempt_time_limit=load_spec(args.forward).max_episode_steps)
    else:
        backend = make_pair_backend(args.task_pair, seed=args.seed)
    start = time.time()
    learner = None
    try:
        if args.online_labels:  # the forward direction's learned reward, labeled online
            from robot_rl.nn.checkpoint import load_checkpoint
            from robot_rl.rewards.sources import resolve_reward_source

            train_config = load_checkpoint(args.forward)[0]["config"]
            learner = online_labels(args, resolve_reward_source(args.reward, train_config["dataset"]),
                                    args.online_labels, args.label_every, args.steps, args.seed,
                                    Path(out) / "online_labels", backend.specs[0], train_config)
            learner.relabels_offline = True  # the forward direction's offline data is relabeled with it too
            console.print(f"online labels: forward rewards from '{args.reward}', {args.online_labels} queries by "
                          f"'{args.labeler}' every {args.label_every} env steps, store {learner.store}")
        specs = (args.forward_success or args.success, args.backward_success or args.success)
        signals = (resolve_success_signal(specs[0], "forward", backend.specs[0], args.threshold),
                   resolve_success_signal(specs[1], "backward", backend.specs[1], args.threshold))
        signals = verified_signals(signals, backend.names, args, console)
        console.print(f"reset-free fine-tuning on {backend.names[0]} / {backend.names[1]}; success signals "
                      f"'{signals[0].name}' / '{signals[1].name}'; -> {out}")
        columns = (TextColumn("[bold]reset-free"), BarColumn(), MofNCompleteColumn(), TextColumn("env steps"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("reset-free", total=args.steps, info="")

            def on_progress(step: int, m: dict[str, float]) -> None:
                def pct(v: float) -> str:
                    return "n/a" if v != v else f"{v:.0%}"
                info = " ".join(f"{d[0]}: claimed {pct(m[f'{d}/claimed_rate'])} true {pct(m[f'{d}/true_rate'])}"
                                for d in DIRECTIONS)
                info += f", interventions {int(m['interventions'])}"
                if "eval/forward/success_rate" in m:
                    info += f", eval fwd {pct(m['eval/forward/success_rate'])}"
                progress.update(bar, completed=step, info=info)

            result = reset_free_finetune(args.forward, args.backward, backend, signals, cfg, out,
                                         on_progress=on_progress, rewards=(learner, None))
    finally:
        backend.close()
        if link is not None:
            link.close()
        if learner is not None:
            learner.close()
    where = {"robot": f"over DDS (domain {args.domain if args.domain is not None else 'ROS_DOMAIN_ID or 0'}, "
                      f"namespace '{args.namespace}'), every step in {args.record}"} if args.robot else {
        "task pair": args.task_pair}
    report = write_report(out, f"Reset-free fine-tuning: {args.forward} / {args.backward}",
                          {"forward checkpoint": str(args.forward), "backward checkpoint": str(args.backward),
                           **where, "seed": args.seed, "wall time": f"{time.time() - start:.0f} s"})
    s = result.summary
    before, after = s.get("eval_before") or {}, s.get("eval_after") or {}

    def pct(v: float | None) -> str:
        return "n/a" if v is None or v != v else f"{v:.0%}"

    console.print(f"{result.steps} env steps, {result.interventions} interventions "
                  f"({s['interventions_per_1k_steps']:.2f} per 1,000 steps); success with resets: forward "
                  f"{pct(before.get('forward'))} -> {pct(after.get('forward'))}, backward "
                  f"{pct(before.get('backward'))} -> {pct(after.get('backward'))}; report: {report}")
    return 0
