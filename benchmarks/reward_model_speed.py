"""Reward-model training steps per second: the vectorized ensemble against a per-member loop, same math, one process.

State model (default; PEBBLE / B-Pref settings): E = 3 members, 3x256 LeakyReLU MLPs with tanh output, r(s, a) with
D = 39 (MetaWorld's state), A = 4, batch 128 pairs of L = 50-step segments, AdamW 3e-4.
Image model (``--obs image``; RL-VLM-F's CNN): 64x64 frames, conv 16-32-64-128 (kernels 5-3-3-3, strides 3-2-2-2),
linear head, r(o); batch 128 pairs of single frames (L = 1); random shifts off (the same cost in every variant).
500 synthetic labeled pairs (numpy seed 0) live on the training device.

- vectorized: ``RewardTrainer.step`` (what ``train_reward_model`` runs): every member draws its own minibatch, all
  members in one batched forward/backward (one ``baddbmm`` per linear layer, one grouped conv per conv layer), one
  fused AdamW step for all parameters; on the CPU in chunks of pairs (``CPU_CHUNK_BYTES``).
- vectorized, one chunk: the same with the whole minibatch at once (no CPU chunking), to show what chunking buys.
- images: convs "sliced" (E convs on slices of the ensemble's weights, the CPU default) or "grouped" (one conv
  with ``groups = E`` per layer, the CUDA default); and torch.func.vmap: the E members as ``MemberNet``s, stacked
  with ``stack_module_state`` and run with ``vmap(functional_call)``, one AdamW step.
- per-member loop: E separate plain networks (``nn.Linear`` / ``nn.Conv2d``), each with its own fused AdamW,
  forward, backward and step.

Before timing, the vectorized step and the loop start from the same weights and take one step on the same minibatch
indices; the largest difference of their gradients is printed (same math: float rounding, ~1e-6 of the largest
gradient). Timed rounds alternate between the variants; the best and the median round of each are printed, then
the ratios to the loop.

    python benchmarks/reward_model_speed.py                       # CPU, 1 thread, state model
    python benchmarks/reward_model_speed.py --threads 2 --length 10
    python benchmarks/reward_model_speed.py --obs image
    python benchmarks/reward_model_speed.py --device cuda --steps 200

``--inference``: instead of training steps, the inference precision rows: ``RewardModel.reward`` (what relabeling
runs: no gradients, chunked, ensemble mean) over ``--inference-steps`` synthetic steps (default 100,000 states or
5,000 frames) with ``precision`` fp32 / tf32 / bf16, side by side (rounds interleaved, best and median), with the
speed ratio to fp32 and the largest reward difference to fp32. The CPU has no TF32 (its tf32 row is fp32).

    python benchmarks/reward_model_speed.py --inference                      # CPU, state model, ~10 s
    python benchmarks/reward_model_speed.py --inference --obs image
    python benchmarks/reward_model_speed.py --inference --device cuda --inference-steps 2000000
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.rewards.model import MemberNet, RewardModel, RewardModelConfig, RewardTrainer

D, A, PAIRS = 39, 4, 500


class Data:
    """Synthetic pairs on the device: states ``[P, 2, L, D]``, actions ``[P, 2, L, A]``, labels ``[P]``, frames
    uint8 ``[P, 2, L, H, W, 3]`` (image model)."""

    def __init__(self, length: int, device: str, image_size: int | None) -> None:
        rng = np.random.default_rng(0)
        self.states = torch.as_tensor(rng.normal(size=(PAIRS, 2, length, D)).astype(np.float32), device=device)
        self.actions = torch.as_tensor(rng.uniform(-1, 1, (PAIRS, 2, length, A)).astype(np.float32), device=device)
        self.labels = torch.as_tensor(rng.integers(0, 2, PAIRS).astype(np.float32), device=device)
        self.frames = None if image_size is None else torch.as_tensor(
            rng.integers(0, 256, (PAIRS, 2, length, image_size, image_size, 3), dtype=np.uint8), device=device)


def _bt_loss(returns: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``returns [B, 2, L]`` per-step rewards -> mean Bradley-Terry cross-entropy over the B pairs."""
    r = returns.sum(-1)
    return F.binary_cross_entropy_with_logits(r[:, 1] - r[:, 0], labels)


class MemberLoop:
    """E plain networks trained one after the other, each with its own optimizer: the unvectorized baseline."""

    def __init__(self, model: RewardModel, data: Data) -> None:
        fused = model.device.type in ("cpu", "cuda")
        self.nets: list[MemberNet] = [model.member(e) for e in range(model.members)]  # same initial weights
        self.optimizers = [torch.optim.AdamW(n.parameters(), lr=model.config.lr, fused=fused) for n in self.nets]
        self.mlps = [nn.Sequential(*[m for i, lin in enumerate(n.linears)
                                     for m in (lin, nn.LeakyReLU(inplace=True) if i < len(n.linears) - 1
                                               else nn.Tanh())]) for n in self.nets]
        self.vector = model.vector_inputs(data.states, data.actions)  # normalized once, as in RewardTrainer
        self.data, self.members, self.batch = data, model.members, model.config.batch_size
        self.generator = torch.Generator(device=model.device)
        self.generator.manual_seed(model.config.seed)

    def step(self) -> None:
        # the same index draw as RewardTrainer: member e reads row e
        index = torch.randint(PAIRS, (self.members, self.batch), device=self.data.labels.device,
                              generator=self.generator)
        for e, rows in enumerate(index):
            if self.data.frames is not None:
                out = self.nets[e](None, None, self.data.frames[rows])  # [B, 2, L]
            else:
                assert self.vector is not None
                out = self.mlps[e](self.vector[rows]).squeeze(-1)
            loss = _bt_loss(out, self.data.labels[rows])
            self.optimizers[e].zero_grad(set_to_none=True)
            loss.backward()
            self.optimizers[e].step()


class VmapMembers:
    """The members as ``MemberNet``s stacked by ``torch.func.stack_module_state``, run with ``vmap``."""

    def __init__(self, model: RewardModel, data: Data) -> None:
        from torch.func import functional_call, stack_module_state, vmap

        nets = [model.member(e) for e in range(model.members)]
        self.params, self.buffers = stack_module_state(nets)
        base = copy.deepcopy(nets[0]).to("meta")

        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], frames: torch.Tensor
                ) -> torch.Tensor:
            return functional_call(base, (params, buffers), (None, None, frames))

        self.forward = vmap(one)
        fused = model.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(list(self.params.values()), lr=model.config.lr, fused=fused)
        self.data, self.members, self.batch = data, model.members, model.config.batch_size
        self.generator = torch.Generator(device=model.device)
        self.generator.manual_seed(model.config.seed)

    def step(self) -> None:
        assert self.data.frames is not None
        index = torch.randint(PAIRS, (self.members, self.batch), device=self.data.labels.device,
                              generator=self.generator)
        out = self.forward(self.params, self.buffers, self.data.frames[index])  # [E, B, 2, L]
        r = out.sum(-1)
        logits = r[..., 1] - r[..., 0]
        loss = F.binary_cross_entropy_with_logits(logits, self.data.labels[index], reduction="none").mean(1).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def build(args: argparse.Namespace) -> tuple[RewardModelConfig, Data, Callable[[], RewardTrainer]]:
    image = args.obs == "image"
    length = args.length or (1 if image else 50)
    config = RewardModelConfig(members=args.members, batch_size=args.batch, obs=args.obs, image_size=args.image_size,
                               use_actions=not image, shift_pad=0)
    data = Data(length, args.device, args.image_size if image else None)
    flat = data.states.reshape(-1, D)

    def trainer() -> RewardTrainer:
        torch.manual_seed(0)
        model = RewardModel(config, D, A, flat.mean(0), flat.std(0)).to(args.device)
        return RewardTrainer(model, data.states, data.actions, data.labels, data.frames)

    return config, data, trainer


def gradient_difference(trainer: RewardTrainer, loop: MemberLoop) -> float:
    """One step of each on the same indices from the same weights: the largest |difference| of any gradient,
    relative to the largest gradient."""
    trainer.step()
    loop.step()
    grads = copy.deepcopy(trainer.model)  # the ensemble's gradients in its parameters' places...
    with torch.no_grad():
        for g, p in zip(grads.parameters(), trainer.model.parameters(), strict=True):
            assert p.grad is not None
            g.copy_(p.grad)
    worst, scale = 0.0, 0.0
    for e, net in enumerate(loop.nets):  # ...so that member(e) lays them out as one member's
        for stacked, single in zip(grads.member(e).parameters(), net.parameters(), strict=True):
            assert single.grad is not None
            worst = max(worst, float((stacked.detach() - single.grad).abs().max()))
            scale = max(scale, float(single.grad.abs().max()))
    return worst / scale


def rate(step: Callable[[], object], steps: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - t)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def inference_rows(args: argparse.Namespace, where: str) -> None:
    """``RewardModel.reward`` per precision on the same random-init model and inputs."""
    from robot_rl.rewards.precision import PRECISIONS

    image = args.obs == "image"
    n = args.inference_steps or (5_000 if image else 100_000)
    config = RewardModelConfig(members=args.members, obs=args.obs, image_size=args.image_size, use_actions=not image)
    torch.manual_seed(0)
    model = RewardModel(config, D, A).to(args.device).eval()
    gen = torch.Generator(device=args.device).manual_seed(0)
    states = torch.randn(n, D, device=args.device, generator=gen)
    actions = torch.rand(n, A, device=args.device, generator=gen) * 2 - 1
    frames = torch.randint(0, 256, (n, args.image_size, args.image_size, 3), device=args.device, generator=gen,
                           dtype=torch.uint8) if image else None
    out: dict[str, torch.Tensor] = {}

    def call(precision: str) -> Callable[[], object]:
        def run() -> None:
            model.precision = precision
            out[precision] = model.reward(states, actions, frames)
        return run

    for precision in PRECISIONS:  # warm up
        rate(call(precision), 1, args.device)
    rates: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for _ in range(args.rounds):
        for precision in PRECISIONS:
            rates[precision].append(rate(call(precision), 1, args.device) * n)
    net = f"CNN {args.image_size}x{args.image_size}" if image else "MLP 3x256"
    print(f"torch {torch.__version__}, {args.device}: {where}")
    print(f"\nRewardModel.reward, {args.obs} model ({net}), E={args.members}, {n} steps per call, "
          f"best / median of {args.rounds} rounds\n")
    print("| precision | steps/s best | steps/s median | speed vs fp32 (median) | max abs reward diff vs fp32 |\n"
          "| --- | --- | --- | --- | --- |")
    base = statistics.median(rates["fp32"])
    for precision, values in rates.items():
        diff = float((out[precision] - out["fp32"]).abs().max())
        print(f"| {precision} | {max(values):,.0f} | {statistics.median(values):,.0f} "
              f"| {statistics.median(values) / base:.2f}x | {diff:.1e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per variant, interleaved")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--batch", type=int, default=128, help="pairs per member per step")
    p.add_argument("--length", type=int, default=None, help="steps per segment (default 50 state, 1 image)")
    p.add_argument("--obs", choices=("state", "image"), default="state")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--inference", action="store_true", help="inference precision rows instead of training steps")
    p.add_argument("--inference-steps", type=int, default=None,
                   help="--inference: steps rewarded per call (default 100000 state, 5000 image)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"{os.cpu_count()} CPUs ({cpu_model()}), {args.threads} thread(s)"
    if args.inference:
        inference_rows(args, where)
        return
    config, data, make_trainer = build(args)
    net = f"CNN {args.image_size}x{args.image_size}" if args.obs == "image" else "MLP 3x256"
    print(f"torch {torch.__version__}, {args.device}: {where}")
    print(f"{args.obs} model ({net}): E={args.members}, batch {args.batch} pairs, L={data.states.shape[2]}")
    chunked, whole = make_trainer(), make_trainer()
    whole.chunks = 1
    loop = MemberLoop(whole.model, data)
    diff = gradient_difference(whole, loop)
    print(f"same math: first-step gradients on the same indices differ by at most {diff:.1e} (relative)")
    variants: list[tuple[str, Callable[[], object]]] = [("per-member loop", loop.step)]
    if args.obs == "image":
        default = "grouped" if args.device.startswith("cuda") else "sliced"
        other = make_trainer()
        other.model.grouped_convs = default == "sliced"
        variants += [(f"vectorized, {chunked.chunks} chunk(s), {default} convs (default)", chunked.step),
                     (f"vectorized, {other.chunks} chunk(s), {'sliced' if default == 'grouped' else 'grouped'} convs",
                      other.step),
                     ("torch.func.vmap", VmapMembers(whole.model, data).step)]
    elif chunked.chunks > 1:
        variants += [(f"vectorized, {chunked.chunks} chunks", chunked.step), ("vectorized, one chunk", whole.step)]
    else:
        variants += [("vectorized", whole.step)]
    for _, step in variants:  # warm up
        rate(step, 2, args.device)
    rates: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(args.rounds):
        for name, step in variants:
            rates[name].append(rate(step, args.steps, args.device))
    width = max(len(name) for name in rates)
    print(f"{'variant':<{width}}  best steps/s  median steps/s")
    for name, values in rates.items():
        print(f"{name:<{width}}  {max(values):12.2f}  {statistics.median(values):14.2f}")
    loop_rates = rates["per-member loop"]
    for name, values in rates.items():
        if name != "per-member loop":
            print(f"ratio {name} / per-member loop: best {max(values) / max(loop_rates):.2f}x, "
                  f"median {statistics.median(values) / statistics.median(loop_rates):.2f}x")


if __name__ == "__main__":
    main()
