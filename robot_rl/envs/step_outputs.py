"""``StepOutputs``: fresh per-step output arrays for a CPU env loop, with no torch call per step.

Why: right after a MuJoCo step has pushed torch's code and data out of the CPU caches, each torch call
(``from_numpy``, even ``tensor.dtype``) costs 1-10 us here, and a MetaWorld step is only ~200 us. So
every ``block`` steps this allocates one array ``[block, *shape]`` per output, wraps it once with
``torch.from_numpy`` and splits it with ``unbind``; a step then takes the next row of every output as a
numpy view (to write into) and as a tensor (to return).

Rows are never handed out twice, so a returned tensor is never overwritten by a later step. A tensor
that is kept keeps its whole block alive (``block`` rows of that output, a few kB for state vectors).
"""

from __future__ import annotations

import numpy as np
import torch


class StepOutputs:
    """Per-step output rows: ``take()`` -> (numpy rows to write, torch tensors over the same memory)."""

    def __init__(self, shapes: list[tuple[tuple[int, ...], type]], zeroed: list[bool], block: int = 64) -> None:
        """``shapes``: per output, its per-step shape (e.g. ``(N, 39)``) and numpy dtype; ``zeroed``: which
        outputs start as zeros (the others are uninitialized and must be fully written every step)."""
        self._shapes = shapes
        self._zeroed = zeroed
        self._block = block
        self._next = block
        self._np_rows: list[tuple[np.ndarray, ...]] = []
        self._torch_rows: list[tuple[torch.Tensor, ...]] = []

    def take(self) -> tuple[tuple[np.ndarray, ...], tuple[torch.Tensor, ...]]:
        """The next step's outputs, as numpy views and as tensors (same memory, never handed out again)."""
        if self._next == self._block:
            self._refill()
        k = self._next
        self._next = k + 1
        return self._np_rows[k], self._torch_rows[k]

    def _refill(self) -> None:
        make = {True: np.zeros, False: np.empty}
        blocks: list[np.ndarray] = [make[zero]((self._block, *shape), dtype)
                                    for (shape, dtype), zero in zip(self._shapes, self._zeroed, strict=True)]
        self._np_rows = list(zip(*[list(b) for b in blocks], strict=True))
        self._torch_rows = list(zip(*[torch.from_numpy(b).unbind(0) for b in blocks], strict=True))
        self._next = 0
