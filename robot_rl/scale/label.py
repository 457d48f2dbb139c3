"""``robot-rl label --labeler vlm --ray-address ADDR|local``: VLM preference queries spread over Ray workers under
one global concurrency and rate limit, every answer through the one label store.

How: ``RayVLMLabeler`` is a ``Labeler`` that ``rewards.labeling.label_queries`` runs as it runs any other, so the
store logic is the single-process one: stored answers are reused, duplicate queries asked once, and each answer is
written by the driver (the one writer of the SQLite store) the moment a worker returns it. Workers are Ray actors
(one CPU each), each opening the dataset read-only and rendering or reading the frames of the queries it gets, and
asking the VLM with its own ``VLMLabeler`` made from the same options (same identity, so the same store keys).

Limits, global by construction: the driver keeps at most ``concurrency`` queries in flight over all workers (as
the single-process labeler does within its one event loop), and with ``requests_per_minute`` every worker's client
takes its request slots from one ``RateSlots`` actor (the same evenly spaced slots as ``robot_rl.llm``'s limiter).

What a failure costs:
- a worker killed: Ray restarts the actor and retries the queries it had in flight; the VLM client's response
  cache (``<store>.llm-cache``, SQLite, on a path every worker sees) answers a retried request whose reply had
  arrived, so at most the requests cut off mid-flight are sent again;
- the driver killed: every answer it had received is in the store; the rerun asks only the rest (again through the
  response cache for replies the workers got meanwhile).

Shared storage, as for ``relabel --ray-address``: the dataset and the response cache at the same path on every node.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from robot_rl.llm import LLMConnectionError, LLMUnavailableError, RateLimiter
from robot_rl.rewards.base import Label, Labeler, Query, Segment


class RateSlots:
    """A Ray actor: the evenly spaced request slots that every worker's client reserves (``reserve() -> s``)."""

    def __init__(self, per_minute: float) -> None:
        self.slots = RateLimiter(per_minute)

    def reserve(self) -> float:
        return self.slots.reserve()


class _RemoteSlots:
    """The ``limiter`` a worker's ``LLMClient`` gets: reserves its slot from the ``RateSlots`` actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def reserve(self) -> float:
        import ray

        return float(ray.get(self.actor.reserve.remote()))


class LabelWorker:
    """A Ray actor: the dataset's frames and a ``VLMLabeler`` made from ``options`` (``make_labeler`` fields)."""

    def __init__(self, dataset: str, options: dict[str, Any], camera: str | None, size: int, slots: Any) -> None:
        self.dataset, self.options, self.camera, self.size, self.slots = dataset, options, camera, size, slots
        self.labeler: Any = None
        self.frames: Any = None
        self.ds: Any = None

    async def answer(self, index: int, first: Segment, second: Segment, task_text: str) -> tuple[int, Label]:
        if self.labeler is None:
            from robot_rl.data import Dataset
            from robot_rl.rewards.frames import FrameSource
            from robot_rl.rewards.labelers import make_labeler

            limiter = _RemoteSlots(self.slots) if self.slots is not None else None
            self.labeler = make_labeler("vlm", **self.options, limiter=limiter)
            self.ds = Dataset(self.dataset)
            self.frames = FrameSource(self.ds, self.camera, (self.size, self.size))
        return index, await self.labeler.label_one(Query(first, second, task_text, self.frames))

    def pid(self) -> int:
        return os.getpid()

    def usage(self) -> dict[str, int]:
        return {} if self.labeler is None else dict(vars(self.labeler.client.usage))

    async def close(self) -> None:
        if self.labeler is not None:
            await self.labeler.client.aclose()
            self.labeler.client.close()
        if self.frames is not None:
            self.frames.close()
        if self.ds is not None:
            self.ds.close()


class RayVLMLabeler:
    """The VLM labeler with its queries answered on Ray at ``address`` (``"local"``: a local Ray of ``workers``
    CPUs). ``local`` is the driver's own ``VLMLabeler`` from the same ``options``: its identity keys the store; it
    sends nothing. ``on_workers(pids)`` is told the actors' process ids once they run."""

    name = "vlm"
    uses_images = True

    def __init__(self, local: Labeler, dataset: str, options: dict[str, Any], camera: str | None, image_size: int,
                 address: str, workers: int | None = None,
                 on_workers: Callable[[list[int]], None] | None = None) -> None:
        self.local, self.dataset, self.options = local, dataset, options
        self.camera, self.image_size, self.address, self.workers = camera, image_size, address, workers
        self.concurrency = int(options.get("concurrency", 4))
        self.on_workers = on_workers
        self.usage: dict[str, int] = {}

    def identity(self) -> dict[str, Any]:
        return self.local.identity()

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        """Yield ``(index, Label)`` for every query as a worker returns it; errors as ``VLMLabeler.label``'s."""
        queries = list(queries)
        if not queries:
            return
        from robot_rl.scale.cluster import ray_session, task_error

        with ray_session(self.address, self.workers) as ray:
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            rpm = self.options.get("requests_per_minute")
            slots = ray.remote(num_cpus=0)(RateSlots).remote(float(rpm)) if rpm else None
            actor = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(LabelWorker)
            options = {k: v for k, v in self.options.items() if k != "requests_per_minute"}
            actors = [actor.remote(self.dataset, options, self.camera, self.image_size, slots)
                      for _ in range(min(count, len(queries)))]
            try:
                if self.on_workers is not None:
                    self.on_workers(ray.get([a.pid.remote() for a in actors]))
                yield from self._dispatch(ray, actors, queries, task_error)
            finally:
                with contextlib.suppress(Exception):
                    for use in ray.get([a.usage.remote() for a in actors], timeout=30):
                        for k, v in use.items():
                            self.usage[k] = self.usage.get(k, 0) + v
                    ray.get([a.close.remote() for a in actors], timeout=30)
                for a in actors:
                    ray.kill(a)
                if slots is not None:
                    ray.kill(slots)

    def _dispatch(self, ray: Any, actors: list[Any], queries: list[Query],
                  task_error: Callable[[BaseException], str]) -> Iterator[tuple[int, Label]]:
        """At most ``concurrency`` queries in flight over all actors; each answer yielded as it arrives."""
        todo = list(range(len(queries)))[::-1]
        inflight: dict[Any, int] = {}
        load = [0] * len(actors)
        answered = 0
        unavailable: list[BaseException] = []
        while todo or inflight:
            while todo and len(inflight) < self.concurrency:
                i = todo.pop()
                k = min(range(len(actors)), key=load.__getitem__)
                q = queries[i]
                inflight[actors[k].answer.remote(i, q.first, q.second, q.task_text)] = k
                load[k] += 1
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                load[inflight.pop(ref)] -= 1
                try:
                    index, label = ray.get(ref)
                except Exception as e:  # a RayTaskError wraps the worker's own exception as its cause
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, LLMUnavailableError) and not isinstance(cause, LLMConnectionError) \
                            and answered:
                        unavailable.append(cause)  # one query's bad luck with a server that answers others
                        continue
                    if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                        raise cause from None
                    raise ValueError(f"label on Ray: {task_error(e)}") from None
                answered += bool(label.provenance.get("requests"))
                yield index, label
        if unavailable:
            raise LLMUnavailableError(
                f"{len(unavailable)} of {len(queries)} queries got no usable reply (the other answers stand; a rerun "
                f"asks only the missing ones); first: {unavailable[0]}")
