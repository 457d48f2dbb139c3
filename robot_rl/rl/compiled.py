"""Optional compiled losses: ``torch.compile`` of an agent's loss computation (forward and backward graphs).

Inside the CUDA-graph runner (``graphed.py``, the default on CUDA) the compiled kernels are captured with the
rest of the update, so inductor's default mode is used: fewer, fused kernels per update. On the eager path on
CUDA the mode is ``reduce-overhead`` (torch.compile's own CUDA graphs around the losses; the optimizer step stays
eager). On the CPU the default inductor mode helps little. Numbers match eager within float tolerance
(tests/rl/test_compiled.py).
"""

from __future__ import annotations

from typing import Any

import torch


def compile_losses(agent: Any, device: torch.device, inside_graph: bool = False) -> None:
    """Replace ``agent.losses`` by its compiled version (the first update then takes a while to compile)."""
    mode = "reduce-overhead" if device.type == "cuda" and not inside_graph else None
    agent.losses = torch.compile(agent.losses, mode=mode, dynamic=False)


def step_begin(device: torch.device) -> None:
    """Mark a new iteration for CUDA-graph trees, so the previous step's outputs may be overwritten."""
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()
