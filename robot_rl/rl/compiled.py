"""Optional compiled updates: ``torch.compile`` of the loss computation (forward and backward graphs).

On CUDA the mode is ``reduce-overhead``, which replays the compiled region as CUDA graphs: small-batch RL is
launch-bound (an eager update is 100-200 kernel launches), so this is where the GPU speed comes from. The
fused Adam step stays eager (a few kernels). Numbers match eager within float tolerance
(tests/rl/test_compiled.py). On the CPU the default inductor mode is used; it helps little there.
"""

from __future__ import annotations

from typing import Any

import torch


def compile_losses(agent: Any, device: torch.device) -> None:
    """Replace ``agent.losses`` by its compiled version (the first update then takes a while to compile)."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    agent.losses = torch.compile(agent.losses, mode=mode, dynamic=False)


def step_begin(device: torch.device) -> None:
    """Mark a new iteration for CUDA-graph trees, so the previous step's outputs may be overwritten."""
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()
