"""``robot-rl collect --ray-address``: the env slots of a collect spread over Ray actors, every episode written by
the one ``DatasetWriter`` of the driver, in the order a single-process collect writes them.

Same episodes as one process: ``collect --num-envs N --seed S`` runs slots ``0..N-1`` (slot ``i`` reset with
``S + i``, behaviours from ``default_rng([S, i, k])``). Here worker ``w`` holds a contiguous range of those slots
(``data.collect.rollouts(..., first_slot=a)``), so each slot sees the same seeds and draws wherever it runs. The
actors advance in rounds of steps; after a round the driver knows every episode that ended before it,
sorts them by (step, slot) as the single process writes them, and writes until it has the episodes asked for.
Every actor has the next two rounds queued, so no worker waits for the slowest one or for the writer.

A worker killed mid-round (node lost, OOM kill): Ray restarts the actor and retries the round; the new actor
replays its slots from the start (seeded, so the same episodes) up to that round and returns only that round's
episodes: nothing lost, nothing twice. The driver killed: as a single-process collect killed, the dataset keeps
every episode written before (``collect --resume`` continues it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from robot_rl.data.collect import ImageOptions, rollouts
from robot_rl.data.episode import Episode
from robot_rl.data.writer import DatasetWriter


@dataclass(frozen=True)
class CollectJob:
    """What every worker needs to build its env and behaviours (``robot-rl collect``'s options)."""

    task: str
    preset: str
    seed: int
    noise: float | None = None
    episode_length: int | None = None


class SlotWorker:
    """One Ray actor: slots ``first..first+count-1`` of the collect, stepped on demand."""

    def __init__(self, job: CollectJob, first: int, count: int) -> None:
        from robot_rl.data.behaviours import NEEDS_EXPERT, resolve_preset
        from robot_rl.envs import make_env

        preset = resolve_preset(job.preset)
        expert = None
        if any(b.kind in NEEDS_EXPERT for b in preset):
            from robot_rl.envs.metaworld_env import metaworld_expert

            expert = metaworld_expert(job.task.removeprefix("metaworld/"))
        self.env = make_env(job.task, num_envs=count, episode_length=job.episode_length)
        self._start = (preset, expert, job.seed, job.noise, first)
        self._steps: Iterator[tuple[int, list[tuple[int, Episode]]]] | None = None
        self.step = 0
        """Steps taken so far."""

    def spec(self) -> Any:
        return self.env.spec

    def pid(self) -> int:
        import os

        return os.getpid()

    def run(self, start: int, stop: int, images: ImageOptions | None = None) -> list[tuple[int, int, Episode]]:
        """Step up to ``stop`` steps in total; ``(step, slot, episode)`` of the episodes that ended at steps
        ``start..stop-1``. A restarted actor (step 0) replays the steps before ``start`` first."""
        if self._steps is None:
            preset, expert, seed, noise, first = self._start
            self._steps = rollouts(self.env, preset, expert, seed, noise, images, first_slot=first)
        out = []
        while self.step < stop:
            step, finished = next(self._steps)
            self.step = step + 1
            if step >= start:
                out += [(step, slot, ep) for slot, ep in finished]
        return out

    def close(self) -> None:
        self.env.close()


def split_slots(num_envs: int, workers: int) -> list[tuple[int, int]]:
    """``(first, count)`` per worker: contiguous, as even as possible, none empty."""
    workers = max(1, min(workers, num_envs))
    base, extra = divmod(num_envs, workers)
    out, first = [], 0
    for w in range(workers):
        count = base + (w < extra)
        out.append((first, count))
        first += count
    return out


class RayCollector:
    """The Ray side of ``collect --ray-address``: ``spec`` (for the writer) and ``collect`` (the episodes)."""

    def __init__(self, address: str, job: CollectJob, num_envs: int, workers: int | None = None) -> None:
        from contextlib import ExitStack

        from robot_rl.scale.cluster import ray_session

        self._stack = ExitStack()
        self.ray = self._stack.enter_context(ray_session(address, workers))
        try:
            count = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
            actor = self.ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(SlotWorker)
            self.actors = [actor.remote(job, first, n) for first, n in split_slots(num_envs, count)]
            self.spec = self.ray.get(self.actors[0].spec.remote())
        except BaseException:
            self._stack.close()
            raise

    def collect(self, writer: DatasetWriter, episodes: int, images: ImageOptions | None = None,
                on_episode: Callable[[str, Episode], None] | None = None) -> list[str]:
        """Write the first ``episodes`` episodes (single-process order) to ``writer``."""
        from collections import deque

        from robot_rl.scale.cluster import task_error

        names: list[str] = []
        chunk = max(1, int(self.spec.max_episode_steps))  # about one episode per slot per round

        def submit(r: int) -> list[Any]:
            return [a.run.remote(r * chunk, (r + 1) * chunk, images) for a in self.actors]

        # Two rounds queued on every actor: a worker that ends its round first starts the next one at once instead
        # of idling until the slowest worker's round is in and written (the two rounds too many at the end are
        # not written).
        queued = deque([submit(0), submit(1)])
        next_round = 2
        while len(names) < episodes:
            try:
                rounds = self.ray.get(queued.popleft())
            except Exception as e:  # a worker that raised (bad task, expert) or died more often than retried
                raise ValueError(f"collect on Ray: {task_error(e)}") from None
            queued.append(submit(next_round))
            next_round += 1
            for _, _, ep in sorted((item for r in rounds for item in r), key=lambda item: (item[0], item[1])):
                name = writer.add_episode(ep)
                names.append(name)
                if on_episode is not None:
                    on_episode(name, ep)
                if len(names) >= episodes:
                    break
        return names

    def pids(self) -> list[int]:
        """The workers' process ids (on their machines)."""
        return list(self.ray.get([a.pid.remote() for a in self.actors]))

    def close(self) -> None:
        try:
            for a in self.actors:
                try:
                    self.ray.get(a.close.remote(), timeout=30)
                except Exception:  # a dead or stuck actor: killed below
                    pass
                self.ray.kill(a)
        finally:
            self._stack.close()
