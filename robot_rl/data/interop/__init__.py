"""Foreign dataset formats in and out: ``robomimic:PATH``, ``lerobot:PATH``, ``minari:DATASET_ID``.

One module a format, each with ``import_dataset(target, out, **options)`` and ``export_dataset(path, target,
**options)`` returning a ``ConvertReport``; ``FORMATS`` maps the scheme to it (the one registry).

```
report = import_source("robomimic:lift/ph/low_dim_v15.hdf5", "lift.h5")
export_to("lift.h5", "lerobot:out/lift")
```
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from robot_rl.data.interop.common import ConvertReport, InteropError
from robot_rl.data.journal import JOURNAL_SUFFIX

FORMATS: dict[str, str] = {
    "robomimic": "robot_rl.data.interop.robomimic",
    "lerobot": "robot_rl.data.interop.lerobot",
    "minari": "robot_rl.data.interop.minari",
}
"""Scheme -> module (imported on use: pyarrow, PyAV and minari load only for their format)."""

__all__ = ["FORMATS", "ConvertReport", "InteropError", "export_to", "format_module", "import_source",
           "parse_source"]


def parse_source(text: str) -> tuple[str, str]:
    """``"robomimic:a/b.hdf5"`` -> ``("robomimic", "a/b.hdf5")``; a one-line ``InteropError`` otherwise."""
    scheme, sep, target = text.partition(":")
    if not sep or scheme not in FORMATS:
        known = ", ".join(f"{s}:PATH" if s != "minari" else "minari:DATASET_ID" for s in FORMATS)
        raise InteropError(f"{text!r}: unknown source; use one of {known}")
    if not target:
        raise InteropError(f"{text!r}: nothing after '{scheme}:'")
    return scheme, target


def format_module(scheme: str) -> ModuleType:
    return importlib.import_module(FORMATS[scheme])


def import_source(source: str, out: str, **options: Any) -> ConvertReport:
    """Import ``SCHEME:TARGET`` into the new robot_rl dataset ``out``; written as ``<out>.importing`` and renamed
    when complete, so a failed or killed import leaves no ``out``."""
    scheme, target = parse_source(source)
    if os.path.exists(out):
        raise InteropError(f"{out}: already exists; choose a new output path")
    partial = f"{out}.importing"
    for leftover in (partial, partial + JOURNAL_SUFFIX):
        if os.path.exists(leftover):  # from an import that was killed
            os.remove(leftover)
    try:
        report: ConvertReport = format_module(scheme).import_dataset(target, partial, **options)
        os.replace(partial, out)
    finally:
        for leftover in (partial, partial + JOURNAL_SUFFIX):
            if os.path.exists(leftover):
                os.remove(leftover)
    report.out = out
    if not report.task_text:
        report.notes.append("no task sentence in the source: give one with --task (VLM labels and reward code use it)")
    return report


def export_to(path: str, destination: str, **options: Any) -> ConvertReport:
    """Export the robot_rl dataset ``path`` to ``SCHEME:TARGET``."""
    scheme, target = parse_source(destination)
    return format_module(scheme).export_dataset(path, target, **options)
