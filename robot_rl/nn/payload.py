"""Files that ``save`` methods write with ``torch.save``: a dict with ``format`` and ``version``, plain Python values
(so ``torch.load(weights_only=True)`` reads them back), and one-line errors when a file is not what it should be.
Shared by the reward model and the success classifier (``robot_rl.rewards``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch


def plain(value: Any, json_safe: bool = False) -> Any:
    """Plain Python values (dicts, lists, numbers) from numpy / torch scalars, as ``torch.load(weights_only=True)``
    reads them back; ``json_safe``: non-finite floats become ``None``."""
    if isinstance(value, dict):
        return {str(k): plain(v, json_safe) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, json_safe) for v in value]
    if isinstance(value, np.generic | torch.Tensor):
        return plain(value.item(), json_safe)
    if json_safe and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def error_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters of it), for one-line errors."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"


def load_payload(path: Path, fmt: str, version: int, what: str, error: type[Exception],
                 hint: str = "") -> dict[str, Any]:
    """The dict a ``save`` of this package wrote to ``path`` (``format`` ``fmt``, ``version``), read on the CPU with
    ``weights_only``; ``error`` (one line naming the file and ``what`` it should be) when it is missing, unreadable,
    something else, or another version."""
    if not path.is_file():
        raise error(f"{path}: no such {what} file{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise error(f"{path}: not a readable {what} file ({error_line(e)})") from e
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise error(f"{path}: not a robot_rl {what} file")
    if payload.get("version") != version:
        raise error(f"{path}: {what} format version {payload.get('version')}, this code reads {version}")
    return payload
