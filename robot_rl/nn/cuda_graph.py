"""Training steps replayed from CUDA graphs: ``StepGraphs`` captures K calls of a step function in one graph.

Small-batch training on a GPU is launch-bound: a step of small MLPs is 100-200 kernel launches of a few
microseconds of work each, so the GPU idles while Python queues them. A whole step — drawing the batch from
device-resident data, forward, backward, the optimizer — is captured once and replayed: one launch for K steps,
no host sync. The learners (``rl/graphed.py``), the reward-model ensemble and the success classifier use it.

What capture needs, and how it is met here:
- static memory: parameters, optimizer state, the step's own persistent tensors (``extra``) and the sums of its
  outputs live outside the graph; batches and gradients are scratch inside the graph's pool;
- the optimizer: ``capturable=True`` param groups (fused Adam/AdamW keep their step counts on the device);
- random streams: the step's generators are registered with the graph (torch registers the default CUDA
  generator, used by dropout and augmentation), so replays draw what eager steps would draw;
- warm-up: capture needs a few real steps first (cuBLAS workspaces, optimizer state); their effect on modules,
  optimizer state, ``extra`` tensors and generators is undone before capture, so K replayed steps equal K eager
  ones (float tolerance; ``tests/rl/test_graphed.py``).

On CPU tensors there is nothing to capture: warm-up and undo run as on CUDA, then each "replay" runs the recorded
body eagerly, which is how the CPU test suite checks the body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

STEPS_PER_REPLAY = 16
"""Default K. Measured on an H200 (benchmarks/iql_speed.md): K = 1 / 4 / 16 / 64 gave 1,813 / 1,869 / 1,885 / 1,803
IQL updates/s — a replayed step is bound by its kernels' GPU time, so K matters little; 16 amortizes the host."""

WARMUP_STEPS = 3
"""Real steps on a side stream before capture (PyTorch's whole-network capture recipe)."""


class StepGraphs:
    """``run(n)``: ``n`` calls of ``step()`` (each returns a float ``[M]`` tensor), summed; K calls per replay.

    Args:
        step: one training step on the device, no host sync; returns its metrics stacked ``[M]``.
        modules: every module whose parameters or buffers the step changes (restored after warm-up).
        optimizer: the step's optimizer; its groups are made capturable.
        generators: the ``torch.Generator``s the step draws from besides the default one.
        steps_per_replay: K.
        extra: further persistent tensors the step changes in place (counters, learning rates).
    """

    def __init__(self, step: Callable[[], torch.Tensor], modules: Sequence[nn.Module], optimizer: torch.optim.Optimizer,
                 generators: Sequence[torch.Generator], steps_per_replay: int,
                 extra: Sequence[torch.Tensor] = ()) -> None:
        if steps_per_replay < 1:
            raise ValueError(f"steps per replay must be >= 1, got {steps_per_replay}")
        self.step, self.modules, self.optimizer = step, list(modules), optimizer
        self.generators, self.k, self.extra = list(generators), steps_per_replay, list(extra)
        self.device = next(p for m in self.modules for p in m.parameters()).device
        self.cuda = self.device.type == "cuda"
        if self.cuda:  # CPU optimizers (the tests' view of the body) have no capturable mode
            for group in optimizer.param_groups:
                group["capturable"] = True
        self._graphs: dict[int, torch.cuda.CUDAGraph | None] = {}
        self._sums = torch.zeros(0)
        """``[M]``: the sums of the last replay (a static buffer)."""

    def run(self, n: int) -> torch.Tensor:
        """``n`` steps (``K`` per replay, then single-step replays for the rest); the sum of their outputs."""
        if n < 1:
            raise ValueError(f"run needs n >= 1 steps, got {n}")
        total: torch.Tensor | None = None
        full, rest = divmod(n, self.k)
        for size, times in ((self.k, full), (1, rest)):
            for _ in range(times):
                graph = self._graph(size)
                if graph is None:  # CPU tensors: the recorded body, run as it is
                    self._record(size)
                else:
                    graph.replay()
                total = self._sums.clone() if total is None else total.add_(self._sums)
        assert total is not None
        return total

    def _record(self, size: int) -> None:
        self._sums.zero_()
        for _ in range(size):
            self._sums.add_(self.step())

    def _graph(self, size: int) -> torch.cuda.CUDAGraph | None:
        if size not in self._graphs:
            self._graphs[size] = self._capture(size)
        return self._graphs[size]

    def _warm_up(self) -> None:
        for _ in range(WARMUP_STEPS):
            out = self.step()
        if self._sums.numel() == 0:
            self._sums = torch.zeros_like(out)

    def _capture(self, size: int) -> torch.cuda.CUDAGraph | None:
        snapshot = self._snapshot()
        if not self.cuda:
            self._warm_up()
            self._restore(snapshot)
            return None
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._warm_up()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._restore(snapshot)
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._record(size)
        return graph

    def _snapshot(self) -> dict[str, Any]:
        return {
            "modules": [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules],
            "optim": {id(p): {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in s.items()}
                      for p, s in self.optimizer.state.items()},
            "extra": [t.detach().clone() for t in self.extra],
            "generators": [g.get_state() for g in self.generators],
            "default_rng": torch.cuda.get_rng_state(self.device) if self.cuda else torch.get_rng_state(),
        }

    @torch.no_grad()
    def _restore(self, snap: dict[str, Any]) -> None:
        """Undo warm-up in place (capture records addresses: every static tensor keeps its storage)."""
        for module, saved in zip(self.modules, snap["modules"], strict=True):
            for key, value in module.state_dict().items():
                value.copy_(saved[key])
        for param, state in self.optimizer.state.items():
            before = snap["optim"].get(id(param))
            for key, value in state.items():
                if torch.is_tensor(value):
                    value.copy_(before[key]) if before is not None else value.zero_()
        for tensor, saved in zip(self.extra, snap["extra"], strict=True):
            tensor.copy_(saved)
        for generator, state in zip(self.generators, snap["generators"], strict=True):
            generator.set_state(state)
        if self.cuda:
            torch.cuda.set_rng_state(snap["default_rng"], self.device)
        else:
            torch.set_rng_state(snap["default_rng"])
