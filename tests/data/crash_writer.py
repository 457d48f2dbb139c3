"""Writer processes for the kill -9 tests (run as ``python -m tests.data.crash_writer``).

Imports once (torch makes that ~2 s), then per stdin line ``write <path> <first_seed> <count> <kill_at> <size>``
forks a writer that appends episodes ``first_seed``, ``first_seed + 1``, ... to ``<path>`` (``resume=True``),
``count`` of them then closes (0: until killed). It prints ``opened <episodes> rolled-back|clean``, then
``begin <seed>`` before and ``done <name> <seed>`` after each ``add_episode``. ``size`` is ``big``
(``crash_episode``: slow to write) or ``small``. With ``kill_at`` = n > 0 the writer sends itself SIGKILL just
before its n-th file-changing call (``pwrite``, ``ftruncate``, ``unlink``, ``replace``); a writer that finishes
prints ``calls <number of such calls>``. This process reaps each writer and prints ``reaped <pid> <status>``.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any

from robot_rl.data import DatasetWriter, Episode
from tests.data.synthetic import crash_episode, make_episode, make_spec

FILE_CHANGES = ("pwrite", "ftruncate", "unlink", "replace")


def small_episode(seed: int) -> Episode:
    return make_episode(seed, length=20, every=5)


def say(line: str) -> None:
    """One ``write`` per line, so that a kill never leaves half a line for the next one to run into."""
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def kill_before(n: int) -> list[int]:
    """Count file-changing os calls in this process; SIGKILL it just before call ``n`` (``n`` = 0: never)."""
    calls = [0]

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)
        return call

    for name in FILE_CHANGES:
        setattr(os, name, wrap(getattr(os, name)))
    return calls


def write(path: str, first_seed: int, count: int, kill_at: int, size: str) -> None:
    calls = kill_before(kill_at)
    make = crash_episode if size == "big" else small_episode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer = DatasetWriter(path, make_spec(), source="crash-test", resume=True)
    rolled_back = any("rolled back" in str(w.message) for w in caught)
    say(f"opened {writer.num_episodes} {'rolled-back' if rolled_back else 'clean'}")
    with writer:
        for seed in range(first_seed, first_seed + (count or 500)):
            episode = make(seed)
            say(f"begin {seed}")
            name = writer.add_episode(episode)
            say(f"done {name} {seed}")
    say(f"calls {calls[0]}")


def main() -> None:
    say("ready")
    for line in sys.stdin:
        command, path, seed, count, kill_at, size = line.split()
        assert command == "write", command
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                write(path, int(seed), int(count), int(kill_at), size)
            except BaseException as e:  # report, never fall back into the parent's loop
                say(f"error {type(e).__name__}: {e}")
                code = 1
            finally:
                os._exit(code)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"reaped {pid} {status}")


if __name__ == "__main__":
    main()
