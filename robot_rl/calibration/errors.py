"""The error type of the calibration package, and reading its YAML files with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class CalibrationError(ValueError):
    """A problem with calibration input (images, board, poses, YAML); its message is one line."""


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML of ``path``; ``CalibrationError`` naming the file if it is missing or not YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as e:
        raise CalibrationError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
