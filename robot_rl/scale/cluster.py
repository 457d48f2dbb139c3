"""Start or join Ray for one command: ``"local"`` starts a private local instance, anything else is the address
of a running cluster (``ray start --head`` on one machine, ``ray start --address HEAD:PORT`` on the others).

Like ``rewards.codegen.pool.RayPool`` (reward-code candidates), a failure to start or join is one ``ValueError``
naming the flag; a Ray that this process started is shut down on exit, one it joined is left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def ray_session(address: str, num_cpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, initialized for ``address`` for the duration of the block.

    ``num_cpus`` sizes a local instance (default: the machine's cores); a cluster brings its own."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--ray-address {address}: Ray is not installed (pip install 'robot-rl[ray]')") from None
    started = not ray.is_initialized()
    if started:
        try:
            if address == "local":
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as e:  # ConnectionError, RuntimeError, ValueError... depending on what is wrong
            raise ValueError(f"--ray-address {address}: cannot start or join Ray ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:300]})") from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def cluster_gpus(ray: Any) -> float:
    """GPUs in the cluster (0 on a CPU-only one): a job asks for one only where there are any."""
    return float(ray.cluster_resources().get("GPU", 0.0))


def task_error(e: BaseException) -> str:
    """A Ray task's failure as one line (Ray's own messages run over many lines with the remote traceback)."""
    cause = getattr(e, "cause", None)
    shown = cause if isinstance(cause, BaseException) else e
    return f"{type(shown).__name__}: {' '.join(str(shown).split())[:300]}"
