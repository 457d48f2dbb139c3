"""Errors and warnings of the dataset store."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file (or an episode about to be written) is unusable.

    The message is one line that names the file, the episode and the key, e.g.
    ``d.h5: episode demo_3: key 'actions': expected float32 [120, 4], got float64 [120, 4]``.
    """


class DatasetWarning(UserWarning):
    """Something in a dataset file was skipped, e.g. an episode a killed writer left incomplete."""
