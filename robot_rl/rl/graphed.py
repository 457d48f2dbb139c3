"""Many updates per call: on CUDA, K whole learner updates captured in one CUDA graph and replayed.

``UpdateRunner`` runs an ``Agent``'s updates through ``nn.cuda_graph.StepGraphs``: one graphed step is the eager
``gradient_step`` — drawing the batch from the device-resident sampler, the losses, backward, the fused Adam
step, the learning-rate schedule, the Polyak update — with the metrics stacked for one add. The schedule runs on
the device: each group's ``LambdaLR`` factors are tabulated once (``lr_table``) and looked up by a device step
counter, so the learning rates take the values the eager ``scheduler.step()`` gives them.

Elsewhere (the CPU) the runner is an eager loop of ``agent.update`` with the same interface, bit-identical to
calling ``update`` K times. The host ``scheduler.last_epoch`` advances with every update on both paths, so
checkpoints (``agent.optimizer_state``) resume on either path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import nn

from robot_rl.nn.cuda_graph import StepGraphs
from robot_rl.rl.agent import Agent, apply_gradients, polyak_update

Sample = Callable[[], dict[str, torch.Tensor]]

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
        self.agent, self.sample = agent, sample
        self.k, self.path, self.mark_step = updates_per_call, path, mark_step
        self._keys: list[str] = []
        if path == "cuda-graph":
            device = next(iter(agent.parameters())).device
            self._table = lr_table(agent.scheduler, max(schedule_length, 1), device)
            self._step = torch.full((1,), agent.scheduler.last_epoch, dtype=torch.int64, device=device)
            for group in agent.optimizer.param_groups:  # read by the capturable fused optimizer on the device
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
            self._lrs = [group["lr"] for group in agent.optimizer.param_groups]
            self._graphs = StepGraphs(self._one_update, [cast(nn.Module, agent)], agent.optimizer, generators,
                                      updates_per_call, extra=[self._step, *self._lrs])

    def run(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` updates; the sum of each metric over them (0-dim device tensors, new each call)."""
        if n < 1:
            raise ValueError(f"run needs n >= 1 updates, got {n}")
        if self.path == "eager":
            return self._run_eager(n)
        total = self._graphs.run(n)
        self.agent.scheduler.last_epoch += n
        return dict(zip(self._keys, total.unbind(0), strict=True))

    def _run_eager(self, n: int) -> dict[str, torch.Tensor]:
        total: dict[str, torch.Tensor] = {}
        for _ in range(n):
            if self.mark_step:
                torch.compiler.cudagraph_mark_step_begin()
            for key, value in self.agent.update(self.sample()).items():
                total[key].add_(value) if key in total else total.setdefault(key, value.clone())
        return total

    def _one_update(self) -> torch.Tensor:
        """One update as the graph records it: the eager ``gradient_step`` with the schedule on the device.
        Returns the metrics stacked ``[M]`` in ``_keys`` order (fixed at the first call)."""
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
