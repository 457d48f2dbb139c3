"""The error type of the calibration package."""

from __future__ import annotations


class CalibrationError(ValueError):
    """A problem with calibration input (images, board, poses, YAML); its message is one line."""
