"""A two-node Ray cluster on loopback, started the way the README tells users to: ``ray start --head`` and one
``ray start --address`` worker node, both on 127.0.0.1, each with one CPU.

Every node runs ``ray start --block`` in its own process group, and teardown ends those groups (SIGTERM, then
SIGKILL): never ``ray stop``, which would stop every Ray on the machine, other users' included. Ports are picked
free, and the temp dir is private, so that clusters of parallel test sessions do not meet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports() -> list[str]:
    args = []
    for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"):
        args += [flag, str(free_port())]
    return args


class LoopbackCluster:
    """``with LoopbackCluster() as c: ... c.address ...`` (``127.0.0.1:PORT``)."""

    def __init__(self, workers: int = 1, cpus_per_node: int = 1) -> None:
        self.workers, self.cpus = workers, cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
        self.procs: list[subprocess.Popen[bytes]] = []
        root = str(Path(__file__).resolve().parents[2])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p), "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "disabled"}

    def _start(self, args: list[str]) -> None:
        log = open(os.path.join(self.temp, f"node{len(self.procs)}.log"), "wb")  # noqa: SIM115 (lives with the node)
        self.procs.append(subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1",
                                            "--num-cpus", str(self.cpus), "--num-gpus", "0", *_ports(), *args],
                                           stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                           start_new_session=True))

    def __enter__(self) -> LoopbackCluster:
        try:
            self._start(["--head", "--port", str(self.port), "--temp-dir", self.temp, "--include-dashboard", "false",
                         "--ray-client-server-port", str(free_port()), "--disable-usage-stats"])
            self._wait_started(0)
            for _ in range(self.workers):
                for attempt in range(3):  # a port picked free may be taken meanwhile by another process
                    self._start(["--address", self.address])
                    try:
                        self._wait_started(len(self.procs) - 1)
                        break
                    except RuntimeError:
                        failed = self.procs.pop()
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(failed.pid, signal.SIGKILL)
                        failed.wait()
                        if attempt == 2:
                            raise
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_started(self, index: int, timeout: float = 180.0) -> None:
        """Until node ``index``'s ``ray start`` says the runtime started (it exits on failure)."""
        log = os.path.join(self.temp, f"node{index}.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[index].poll() is not None:
                with open(log, errors="replace") as f:
                    tail = " | ".join(line.strip() for line in f.read().splitlines()[-6:])
                raise RuntimeError(f"ray start exited ({self.procs[index].returncode}): {tail}")
            with open(log, errors="replace") as f:
                if "Ray runtime started" in f.read():
                    return
            time.sleep(0.5)
        raise RuntimeError(f"ray start: no runtime after {timeout:.0f} s; see {log}")

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # whatever of the node is left (workers, agents)
            p.wait()
        shutil.rmtree(self.temp, ignore_errors=True)
