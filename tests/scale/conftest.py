"""One two-node Ray cluster on loopback for the whole ``tests/scale`` session (starting one costs ~20-40 s here)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.scale.ray_cluster import LoopbackCluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LoopbackCluster]:
    pytest.importorskip("ray")
    old = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the test cluster runs without a token (loopback only)
    try:
        with LoopbackCluster(workers=1, cpus_per_node=1) as cluster:
            yield cluster
    finally:
        if old is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old
