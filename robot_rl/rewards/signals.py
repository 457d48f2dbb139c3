"""Success signals by name, for reset-free fine-tuning (``robot-rl finetune --reset-free --success``):
``classifier:RUN_DIR`` (or ``success:RUN_DIR``), ``constant:P`` and ``ground_truth``. One table, ``SIGNALS``, read
with the reward sources' parser (``sources.parse_kind``); a new kind is one factory and one row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from robot_rl.core import EnvSpec, SuccessSignal
from robot_rl.rewards.sources import parse_kind


@dataclass(frozen=True)
class SignalKind:
    """A row of ``SIGNALS``."""

    argument: str
    """What follows ``kind:``; ``""``: none."""
    help: str
    open: Callable[[str, EnvSpec, str | torch.device], SuccessSignal]
    """``(argument, the direction's EnvSpec, device) -> signal``."""
    takes_threshold: bool = True
    """``--threshold`` overrides the signal's own."""


def _ground_truth_signal(arg: str, spec: EnvSpec, device: str | torch.device) -> SuccessSignal:
    from robot_rl.rl.reset_free import GroundTruthSuccess

    return GroundTruthSuccess(spec)


def _classifier_signal(arg: str, spec: EnvSpec, device: str | torch.device) -> SuccessSignal:
    from robot_rl.rewards.success import ClassifierSuccess

    return ClassifierSuccess(arg, device)


def _constant_signal(arg: str, spec: EnvSpec, device: str | torch.device) -> SuccessSignal:
    from robot_rl.rewards.success import ConstantSuccess, SuccessError

    try:
        p = float(arg)
    except ValueError:
        raise SuccessError(f"success signal 'constant:{arg}': expected constant:P with P in [0, 1]") from None
    return ConstantSuccess(p)


SIGNALS: dict[str, SignalKind] = {
    "classifier": SignalKind("RUN_DIR", "a success classifier (robot-rl train-success)", _classifier_signal),
    "success": SignalKind("RUN_DIR", "the same as classifier:RUN_DIR", _classifier_signal),
    "ground_truth": SignalKind("", "the simulator's flag: the baseline, sim only", _ground_truth_signal, False),
    "constant": SignalKind("P", "P(success) = P for every observation", _constant_signal),
}
"""Success-signal kind -> row, for ``robot-rl finetune --reset-free --success``."""


def signal_help() -> str:
    """The success-signal kinds and what each is, for a CLI option's help."""
    return "; ".join(f"{k}:{row.argument}: {row.help}" if row.argument else f"{k}: {row.help}"
                     for k, row in SIGNALS.items())


def resolve_success_signal(text: str | None, which: str, backend_spec: EnvSpec, threshold: float | None = None,
                           device: str | torch.device = "cpu") -> SuccessSignal:
    """The success signal ``text`` (``classifier:RUN_DIR``, ``success:RUN_DIR``, ``ground_truth``, ``constant:P``)
    of the ``which`` direction of reset-free fine-tuning; ``threshold`` overrides a classifier's own."""
    if text is None:
        raise ValueError(f"reset-free: no success signal for the {which} direction; pass --success "
                         "classifier:RUN_DIR (or --forward-success / --backward-success; ground_truth only as the "
                         "sim baseline)")
    found = parse_kind(text, SIGNALS)
    if found is None:
        raise ValueError(f"unknown success signal '{text}' for the {which} direction; choose classifier:RUN_DIR, "
                         "ground_truth or constant:P")
    row, arg = found
    signal = row.open(arg, backend_spec, device)
    classifier = getattr(signal, "classifier", None)
    if classifier is not None and classifier.image_key is not None:
        raise ValueError(f"{text}: an image success classifier cannot relabel the offline data of reset-free "
                         "fine-tuning yet; train one with --obs state")
    if threshold is not None and row.takes_threshold:
        signal.threshold = float(threshold)
    return signal
