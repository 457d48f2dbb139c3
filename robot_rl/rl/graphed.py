"""Many updates per call: on CUDA, K whole updates captured in one CUDA graph and replayed.

Small-batch RL on a GPU is launch-bound: one eager IQL update is 100-200 kernel launches of a few microseconds
of work each, so the GPU idles while Python queues them. ``UpdateRunner`` captures the *whole* update — drawing
the batch from the device-resident sampler, the losses, backward, the fused Adam step, the learning-rate
schedule, the Polyak update and the metric sums — K times in one ``torch.cuda.CUDAGraph``, and replays it: one
launch for K updates, no host sync.

What capture needs, and how it is met:
- static memory: parameters, optimizer state, learning rates (device tensors, ``capturable=True``), the schedule
  step counter and the metric sums live outside the graph; batches and gradients are scratch inside its pool;
- the schedule on the device: each group's ``LambdaLR`` factors are tabulated once (``lr_table``) and looked up
  by a device step counter, so the learning rates follow the same values as the eager ``scheduler.step()``;
- the random streams: the sampler's generators are registered with the graph (the default CUDA generator, used
  by dropout and image augmentation, is registered by torch), so replays draw what eager updates would draw;
- warm-up: capture needs a few real iterations first (cuBLAS workspaces, optimizer state); their effect on
  parameters, optimizer state, generators and counters is undone before capture, so the K replayed updates
  equal K eager ones (``tests/rl/test_graphed.py``, float tolerance).

Elsewhere (the CPU) the runner is an eager loop of ``agent.update`` with the same interface, bit-identical to
calling ``update`` K times. The host ``scheduler.last_epoch`` advances by K per call on both paths, so
checkpoints (``agent.optimizer_state``) resume on either path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from robot_rl.rl.agent import Agent, apply_gradients, polyak_update

Sample = Callable[[], dict[str, torch.Tensor]]

WARMUP_ITERATIONS = 3
"""Real iterations on a side stream before capture (PyTorch's whole-network capture recipe)."""


def choose_path(device: torch.device, cuda_graphs: bool = True) -> str:
    """``"cuda-graph"`` on CUDA unless turned off, else ``"eager"``."""
    return "cuda-graph" if device.type == "cuda" and cuda_graphs else "eager"


def lr_table(scheduler: torch.optim.lr_scheduler.LambdaLR, length: int, device: torch.device) -> torch.Tensor:
    """``[G, length]`` float32: group g's learning rate after n schedule steps, ``base_lr_g * lambda_g(n)``.

    Entries past ``length`` are clamped to the last one: ``LambdaLR`` factors here are constant after the run's
    planned ``steps`` (cosine decays to 0 there; the others are constant).
    """
    rows = [[base * float(fn(n)) for n in range(length)] for base, fn in zip(scheduler.base_lrs,
                                                                              scheduler.lr_lambdas, strict=True)]
    return torch.tensor(rows, dtype=torch.float32, device=device)


class UpdateRunner:
    """Runs ``n`` updates of ``agent``, each on a fresh ``sample()`` batch, and returns the sums of the metrics.

    Args:
        agent: the learner (``Agent`` protocol), already on ``device``, with its state restored.
        sample: draws one batch on the device with no host sync (``TransitionSampler.sample`` bound to B).
        generators: the ``torch.Generator``s ``sample`` draws from (registered with the graph on CUDA).
        updates_per_call: K, updates per graph replay (the eager path ignores it).
        path: ``"cuda-graph"`` or ``"eager"`` (``choose_path``).
        schedule_length: entries of the learning-rate table (the run's planned updates + 1).
        mark_step: eager path only: mark a new step for torch.compile's CUDA-graph trees before each update.
    """

    def __init__(self, agent: Agent, sample: Sample, generators: Sequence[torch.Generator], updates_per_call: int,
                 path: str, schedule_length: int, mark_step: bool = False) -> None:
        if updates_per_call < 1:
            raise ValueError(f"updates_per_call must be >= 1, got {updates_per_call}")
        if path not in ("cuda-graph", "eager"):
            raise ValueError(f"unknown update path '{path}'")
        self.agent, self.sample, self.generators = agent, sample, list(generators)
        self.k, self.path, self.mark_step = updates_per_call, path, mark_step
        self._graphs: dict[int, torch.cuda.CUDAGraph | None] = {}
        self._keys: list[str] = []
        self._sums = torch.zeros(0)
        """``[M]``: the metric sums of the last replay (static, ``_keys`` order; one add per update)."""
        if path == "cuda-graph":
            self._prepare_static(schedule_length)

    # -- public -------------------------------------------------------------------------------------------------

    def run(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` updates; the sum of each metric over them (0-dim device tensors, new each call)."""
        if n < 1:
            raise ValueError(f"run needs n >= 1 updates, got {n}")
        if self.path == "eager":
            return self._run_eager(n)
        total: torch.Tensor | None = None
        full, rest = divmod(n, self.k)
        for size, times in ((self.k, full), (1, rest)):
            for _ in range(times):
                graph = self._graph(size)
                if graph is None:  # CPU tensors (tests): the recorded body, run as it is
                    self._record(size)
                else:
                    graph.replay()
                total = self._sums.clone() if total is None else total + self._sums
        self.agent.scheduler.last_epoch += n
        assert total is not None
        return dict(zip(self._keys, total.unbind(0), strict=True))

    # -- eager --------------------------------------------------------------------------------------------------

    def _run_eager(self, n: int) -> dict[str, torch.Tensor]:
        total: dict[str, torch.Tensor] = {}
        for _ in range(n):
            if self.mark_step:
                torch.compiler.cudagraph_mark_step_begin()
            for key, value in self.agent.update(self.sample()).items():
                total[key].add_(value) if key in total else total.setdefault(key, value.clone())
        return total

    # -- CUDA graph ---------------------------------------------------------------------------------------------

    def _prepare_static(self, schedule_length: int) -> None:
        """Learning rates become device tensors read by the capturable fused optimizer; the schedule is tabulated."""
        agent = self.agent
        device = next(iter(agent.parameters())).device
        self._table = lr_table(agent.scheduler, max(schedule_length, 1), device)
        self._cuda = device.type == "cuda"
        self._step = torch.full((1,), agent.scheduler.last_epoch, dtype=torch.int64, device=device)
        for group in agent.optimizer.param_groups:
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
            group["capturable"] = True
        self._lrs = [group["lr"] for group in agent.optimizer.param_groups]

    def _one_update(self) -> torch.Tensor:
        """One update as the graph records it: the eager ``gradient_step`` with the schedule on the device.
        Returns the metrics stacked ``[M]`` in ``_keys`` order (fixed at warm-up)."""
        out = self.agent.losses(self.sample())
        apply_gradients(self.agent, out)
        self._step.add_(1)
        index = self._step.clamp(max=self._table.shape[1] - 1)
        rates = torch.index_select(self._table, 1, index).squeeze(1)  # [G]
        torch._foreach_copy_(self._lrs, list(rates.unbind(0)))
        polyak_update(self.agent)
        if not self._keys:
            self._keys = list(out)
        elif list(out) != self._keys:
            raise RuntimeError(f"losses() returned {list(out)} after {self._keys}; its keys must not change")
        return torch.stack([out[k].detach().float() for k in self._keys])

    def _record(self, size: int) -> None:
        """The body of a graph of ``size`` updates: the metric sums are a static buffer, zeroed first."""
        self._sums.zero_()
        for _ in range(size):
            self._sums.add_(self._one_update())

    def _graph(self, size: int) -> torch.cuda.CUDAGraph | None:
        if size not in self._graphs:
            self._graphs[size] = self._capture(size)
        return self._graphs[size]

    def _warm_up(self) -> None:
        for _ in range(WARMUP_ITERATIONS):
            metrics = self._one_update()
        if self._sums.numel() == 0:
            self._sums = torch.zeros_like(metrics)

    def _capture(self, size: int) -> torch.cuda.CUDAGraph | None:
        """Warm up, undo the warm-up, capture ``size`` updates. On CPU tensors (the tests' view of the graph
        body) there is nothing to capture: warm-up and undo only, and ``run`` executes the body."""
        snapshot = self._snapshot()
        if not self._cuda:
            self._warm_up()
            self._restore(snapshot)
            return None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._warm_up()
        torch.cuda.current_stream().wait_stream(side)
        self._restore(snapshot)
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        self.agent.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._record(size)
        return graph

    def _snapshot(self) -> dict[str, Any]:
        agent = self.agent
        return {
            "model": {k: v.detach().clone() for k, v in agent.state_dict().items()},
            "optim": {id(p): {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in s.items()}
                      for p, s in agent.optimizer.state.items()},
            "lrs": [lr.detach().clone() for lr in self._lrs],
            "step": self._step.clone(),
            "generators": [g.get_state() for g in self.generators],
            "default_rng": torch.cuda.get_rng_state() if self._cuda else torch.get_rng_state(),
        }

    @torch.no_grad()
    def _restore(self, snap: dict[str, Any]) -> None:
        """Undo warm-up in place (capture records addresses: every static tensor keeps its storage)."""
        agent = self.agent
        for key, value in agent.state_dict().items():
            value.copy_(snap["model"][key])
        for param, state in agent.optimizer.state.items():
            before = snap["optim"].get(id(param))
            for key, value in state.items():
                if torch.is_tensor(value):
                    value.copy_(before[key]) if before is not None else value.zero_()
        for lr, saved in zip(self._lrs, snap["lrs"], strict=True):
            lr.copy_(saved)
        self._step.copy_(snap["step"])
        for generator, state in zip(self.generators, snap["generators"], strict=True):
            generator.set_state(state)
        if self._cuda:
            torch.cuda.set_rng_state(snap["default_rng"])
        else:
            torch.set_rng_state(snap["default_rng"])


def default_updates_per_call(path: str) -> int:
    """K when the run does not set it: measured on an H200 (benchmarks/iql_speed.md); 1 on the eager path."""
    return 16 if path == "cuda-graph" else 1


def is_finite_sum(sums: dict[str, torch.Tensor]) -> bool:
    """Host check (syncs) that every summed metric is finite."""
    return all(math.isfinite(float(v)) for v in sums.values())
