"""Running candidates in parallel: local worker processes by default, Ray tasks when an address is given.

One candidate's crash (segfault, ``os._exit``, out of memory) or hang never takes the search down: each candidate
gets a wall-clock timeout, after which its worker is killed, and comes back as a ``timeout`` / ``failed`` result.

Local: one fresh ``spawn`` process per candidate, in its own process group, at most ``workers`` at once. Not
``concurrent.futures.ProcessPoolExecutor``: a worker that dies breaks the whole executor (every pending future fails
with ``BrokenProcessPool``) and a running task cannot be killed on its own, which are the two things a search over
untrusted candidates needs. A fresh process per candidate also means nothing (memory, threads, imports) leaks from
one candidate into the next; the cost is the interpreter start-up (~3-5 s here) per candidate.

Ray: ``ray.init(address=...)`` (``"local"`` starts a local instance with ``num_cpus=workers`` and no dashboard);
each candidate is a task with ``num_cpus=1, max_retries=0``; on timeout it is cancelled with ``force=True``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from robot_rl.rewards.codegen.train import CandidateJob, run_candidate

OnDone = Callable[[dict[str, Any]], None]
KILL_GRACE_S = 10.0
"""Seconds past a candidate's own deadline before its worker is killed (it normally stops itself first)."""


class CandidatePool(Protocol):
    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        """Run ``jobs``; ``on_done(result)`` as each finishes; results in the order of ``jobs``."""
        ...

    def close(self) -> None: ...


def _failed(job: CandidateJob, status: str, reason: str, seconds: float) -> dict[str, Any]:
    return {"id": job.id, "iteration": job.iteration, "index": job.index, "trainer": job.budget.trainer,
            "status": status, "reason": reason, "seconds": seconds}


Target = Callable[[CandidateJob], dict[str, Any]]


def _child(target: Target, job: CandidateJob, conn: Connection) -> None:
    os.setpgid(0, 0)  # its own process group: a kill on timeout reaches whatever it started
    start = time.monotonic()
    try:
        result = target(job)
    except BaseException as e:  # run_candidate reports its own failures; this is for anything that escapes
        result = _failed(job, "failed", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
                         time.monotonic() - start)
    conn.send(result)
    conn.close()


class _Running:
    def __init__(self, job: CandidateJob, process: Any, conn: Connection) -> None:
        self.job, self.process, self.conn, self.start = job, process, conn, time.monotonic()


class LocalPool:
    """At most ``workers`` candidates at once, each in a fresh spawned process running ``target(job)`` (an
    importable function; default ``run_candidate``)."""

    def __init__(self, workers: int = 2, target: Target = run_candidate, grace_s: float = KILL_GRACE_S) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.target = target
        self.grace_s = grace_s
        self._ctx = get_context("spawn")

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        pending = list(jobs)
        running: list[_Running] = []
        results: dict[str, dict[str, Any]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    running.append(self._start(pending.pop(0)))
                wait([r.conn for r in running] + [r.process.sentinel for r in running], timeout=0.5)
                for r in list(running):
                    result = self._poll(r)
                    if result is not None:
                        running.remove(r)
                        results[r.job.id] = result
                        if on_done is not None:
                            on_done(result)
        finally:
            for r in running:  # interrupted: leave nothing behind
                _kill(r.process)
        return [results[j.id] for j in jobs]

    def _start(self, job: CandidateJob) -> _Running:
        parent, child = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=_child, args=(self.target, job, child), name=f"candidate-{job.id}")
        process.start()
        child.close()
        return _Running(job, process, parent)

    def _poll(self, r: _Running) -> dict[str, Any] | None:
        elapsed = time.monotonic() - r.start
        if r.conn.poll():
            try:
                result: dict[str, Any] = r.conn.recv()
            except (EOFError, OSError):  # the pipe closed with nothing in it: the worker died
                r.process.join(timeout=5)
                result = _failed(r.job, "failed", f"its worker process died ({_exit(r.process)})", elapsed)
            r.process.join(timeout=5)
            _kill(r.process)
            r.conn.close()
            return result
        if not r.process.is_alive():
            r.process.join()
            r.conn.close()
            return _failed(r.job, "failed", f"its worker process died ({_exit(r.process)})", elapsed)
        if elapsed > r.job.deadline_s + self.grace_s:
            _kill(r.process)
            r.conn.close()
            return _failed(r.job, "timeout", f"no result within {r.job.deadline_s:g} s: killed", elapsed)
        return None

    def close(self) -> None:
        pass


def _exit(process: Any) -> str:
    code = process.exitcode
    return f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"


def _kill(process: Any) -> None:
    if process.pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.kill()
    process.join(timeout=5)


class RayPool:
    """Candidates as Ray tasks on the cluster at ``address`` (``"local"``: start a local one)."""

    def __init__(self, address: str, workers: int = 2) -> None:
        import ray

        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            try:
                if address == "local":
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except Exception as e:  # ConnectionError, RuntimeError, ValueError... depending on what is wrong
                raise ValueError(f"--ray-address {address}: cannot start or join Ray ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:300]})") from None
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_candidate)

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        ray = self._ray
        refs = {self._remote.remote(job): (job, time.monotonic()) for job in jobs}
        results: dict[str, dict[str, Any]] = {}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            done: list[tuple[Any, dict[str, Any]]] = []
            for ref in ready:
                job, start = refs[ref]
                try:
                    done.append((ref, ray.get(ref)))
                except Exception as e:  # a crashed worker or task: this candidate only
                    reason = f"its Ray task failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
                    done.append((ref, _failed(job, "failed", reason, time.monotonic() - start)))
            for ref, (job, start) in refs.items():
                if ref not in ready and time.monotonic() - start > job.deadline_s + KILL_GRACE_S:
                    ray.cancel(ref, force=True)
                    done.append((ref, _failed(job, "timeout", f"no result within {job.deadline_s:g} s: cancelled",
                                              time.monotonic() - start)))
            for ref, result in done:
                job, _ = refs.pop(ref)
                results[job.id] = result
                if on_done is not None:
                    on_done(result)
        return [results[j.id] for j in jobs]

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_pool(workers: int = 2, ray_address: str | None = None) -> CandidatePool:
    """``RayPool`` when ``ray_address`` is given, else ``LocalPool``."""
    return RayPool(ray_address, workers) if ray_address else LocalPool(workers)
