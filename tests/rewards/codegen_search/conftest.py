"""A small reach dataset (tests/rewards/conftest.py) with scripted-teacher preference labels in a label store."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_rl.rewards.jobs import label_dataset, make_labeler
from tests.rewards.conftest import write_reach


@pytest.fixture(scope="session")
def labeled_reach(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, label store): 40 pairs of 10-step segments answered by a perfectly rational scripted teacher."""
    root = tmp_path_factory.mktemp("labeled")
    dataset = write_reach(root / "reach.h5")
    store = root / "labels.sqlite"
    label_dataset(str(dataset), make_labeler("scripted"), 40, 10, store=str(store))
    return dataset, store
