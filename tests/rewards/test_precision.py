"""``robot_rl.rewards.precision``: the TF32 switches are set only inside ``precision_context`` and restored after it
(also after an exception, and whatever they were before); bf16 autocasts; CPU contexts touch no CUDA switch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from robot_rl.rewards.precision import PRECISIONS, precision_context, resolve_precision, tf32_flags


@pytest.fixture
def restore_flags() -> Iterator[tuple[str, str]]:
    saved = tf32_flags()
    yield saved
    from robot_rl.rewards.precision import _set_tf32_flags

    _set_tf32_flags(saved)


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # bf16 on "cuda" without a GPU: autocast is off
@pytest.mark.parametrize("before", [("none", "tf32"), ("ieee", "ieee"), ("tf32", "tf32")])
@pytest.mark.parametrize("precision, inside", [("fp32", ("ieee", "ieee")), ("tf32", ("tf32", "tf32")),
                                               ("bf16", ("tf32", "tf32"))])
def test_tf32_switches_are_restored(restore_flags: tuple[str, str], before: tuple[str, str], precision: str,
                                    inside: tuple[str, str]) -> None:
    from robot_rl.rewards.precision import _set_tf32_flags

    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        before = tuple("ieee" if b == "none" else b for b in before)  # type: ignore[assignment]
    _set_tf32_flags(before)
    # the switches are process-wide Python-level settings: no GPU is needed to set or read them
    with precision_context(precision, "cuda"):  # type: ignore[arg-type]
        assert tf32_flags() == inside
    assert tf32_flags() == before
    with pytest.raises(RuntimeError, match="boom"):
        with precision_context(precision, "cuda"):  # type: ignore[arg-type]
            raise RuntimeError("boom")
    assert tf32_flags() == before


def test_cpu_contexts_leave_cuda_switches_alone_and_bf16_autocasts(restore_flags: tuple[str, str]) -> None:
    before = tf32_flags()
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    for precision in PRECISIONS:
        with precision_context(precision, "cpu"):
            assert tf32_flags() == before
            assert torch.is_autocast_enabled("cpu") == (precision == "bf16")
            assert (a @ b).dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert not torch.is_autocast_enabled("cpu")


def test_resolve() -> None:
    assert resolve_precision(None, "cpu", "tf32") == "fp32"
    assert resolve_precision(None, torch.device("cuda", 0), "tf32") == "tf32"
    assert resolve_precision("bf16", "cpu", "tf32") == "bf16"
    with pytest.raises(ValueError, match="got 'half'"):
        resolve_precision("half", "cpu", "tf32")
    with pytest.raises(ValueError):
        with precision_context("half", "cpu"):  # type: ignore[arg-type]
            pass
