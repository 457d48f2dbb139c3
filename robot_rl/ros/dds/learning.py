"""The actor/learner link over DDS: transitions out of the robot PC, acks and policy weights back.

Three topics (``robot_rl_msgs/msg/Blob``, relative to the participant's namespace):

| topic | from -> to | QoS | payload |
| --- | --- | --- | --- |
| ``learning/transitions`` | actor -> learner | reliable, keep last 256 | a batch: float32 rows (:class:`RowLayout`) |
| ``learning/acks`` | learner -> actor | reliable, keep last 256 | empty: ``(sender, seq)`` names the batch |
| ``learning/weights`` | learner -> actor | latched (transient local, keep last 1) | policy weights (opaque bytes) |

Nothing is lost across a crash of either side:

- the actor appends every transition to its :class:`Spool` on disk as it is made (one ``write`` per step, so a
  ``kill -9`` loses at most the step in flight: its command went out but its outcome was never observed); a batch
  is sealed when full, at an episode's end, or after ``max_batch_s``, then sent, and re-sent every ``resend_s``
  until acked; an ack deletes it. A restarted actor seals what the killed one left open and sends it;
- the learner writes each new batch to its ``received`` folder (temporary file, fsync, rename) *before* acking it,
  and acks a batch it already holds again without storing it twice. A restarted learner reloads that folder.

Weights are latched: an actor that starts (or restarts) after the last push gets it at once. Survives a process
kill, not a power loss on the actor (no fsync per step).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.ros.dds.msgs import Blob
from robot_rl.ros.dds.participant import Participant
from robot_rl.ros.dds.qos import LATCHED, QosProfile

TRANSITIONS, ACKS, WEIGHTS = "learning/transitions", "learning/acks", "learning/weights"
LINK = QosProfile(reliable=True, transient_local=False, depth=256)

HOLD, POLICY, HUMAN = 0, 1, 2
"""``source`` of a step: the actor held (it had no weights yet), the policy acted, a person intervened."""


@dataclass(frozen=True)
class RowLayout:
    """One transition as one float32 row: ``obs [D] | action [A] | next_obs [D] | reward | terminal | done |
    source | commanded | version`` (``source``: HOLD/POLICY/HUMAN; ``commanded``: the gate let the command out;
    ``version``: the weights version that acted)."""

    state_dim: int
    action_dim: int
    FIELDS = ("reward", "terminal", "done", "source", "commanded", "version")

    @property
    def width(self) -> int:
        return 2 * self.state_dim + self.action_dim + len(self.FIELDS)

    def pack(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: float, terminal: bool,
             done: bool, source: int, commanded: bool, version: int) -> np.ndarray:
        return np.concatenate([np.asarray(obs, np.float32).reshape(-1), np.asarray(action, np.float32).reshape(-1),
                               np.asarray(next_obs, np.float32).reshape(-1),
                               np.array([reward, terminal, done, source, commanded, version], np.float32)])

    def unpack(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``[N, width]`` -> ``obs``, ``actions``, ``next_obs`` and one ``[N]`` array per field."""
        d, a = self.state_dim, self.action_dim
        rows = np.asarray(rows, np.float32).reshape(-1, self.width)
        out = {"obs": rows[:, :d], "actions": rows[:, d:d + a], "next_obs": rows[:, d + a:2 * d + a]}
        out.update({name: rows[:, 2 * d + a + i] for i, name in enumerate(self.FIELDS)})
        return out

    def rows(self, data: bytes | np.ndarray, where: str) -> np.ndarray:
        """Payload bytes -> ``[N, width]``; one-line ``ValueError`` naming ``where`` if they do not fit."""
        raw = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), np.float32)
        if raw.size == 0 or raw.size % self.width:
            raise ValueError(f"{where}: {raw.size} floats are not whole rows of {self.width} (state {self.state_dim}, "
                             f"action {self.action_dim}): another robot or a torn file")
        return raw.reshape(-1, self.width)


def _name(sender: str, seq: int) -> str:
    return f"{sender}-{seq:08d}"


def _parse(stem: str) -> tuple[str, int]:
    sender, _, seq = stem.rpartition("-")
    return sender, int(seq)


class Spool:
    """The actor's on-disk queue of transitions: ``<actor>-<seq>.open`` (being appended) and ``.rows`` (sealed,
    waiting for an ack), plus ``weights.bin`` (the last weights received, for a restart without a learner)."""

    def __init__(self, folder: Path, layout: RowLayout, actor_id: str):
        self.folder, self.layout, self.actor_id = Path(folder), layout, actor_id
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "spool.json"
        want = {"state_dim": layout.state_dim, "action_dim": layout.action_dim}
        if meta.exists():
            have = json.loads(meta.read_text())
            if have != want:
                raise ValueError(f"{self.folder}: spool of another robot ({have}, this one {want}); use another "
                                 f"--spool folder")
        else:
            meta.write_text(json.dumps(want))
        for path in sorted(self.folder.glob("*.open")):  # what a killed actor left: whole rows only
            size = path.stat().st_size // (4 * layout.width) * (4 * layout.width)
            if size:
                os.truncate(path, size)
                path.rename(path.with_suffix(".rows"))
            else:
                path.unlink()
        self.seq = 0
        self._fd: int | None = None
        self._rows = 0
        self._opened = 0.0
        self.recorded = 0

    @property
    def open_rows(self) -> int:
        return self._rows

    def append(self, row: np.ndarray) -> None:
        """Add one transition (one ``write``: on disk before the next step's command goes out)."""
        data = np.asarray(row, np.float32).reshape(-1)
        if data.size != self.layout.width:
            raise ValueError(f"spool row has {data.size} values, the layout {self.layout.width}")
        if self._fd is None:
            path = self.folder / f"{_name(self.actor_id, self.seq)}.open"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._opened = time.monotonic()
        os.write(self._fd, data.tobytes())
        self._rows += 1
        self.recorded += 1

    def age_s(self) -> float:
        return time.monotonic() - self._opened if self._fd is not None else 0.0

    def seal(self) -> Path | None:
        """Close the open batch (if any) for sending; returns its path."""
        if self._fd is None:
            return None
        os.close(self._fd)
        self._fd = None
        name = _name(self.actor_id, self.seq)
        path = (self.folder / f"{name}.open").rename(self.folder / f"{name}.rows")
        self.seq += 1
        self._rows = 0
        return path

    def pending(self) -> list[Path]:
        """Sealed batches not yet acked, oldest first."""
        return sorted(self.folder.glob("*.rows"), key=lambda p: (p.stat().st_mtime, p.name))

    def ack(self, name: str) -> bool:
        path = self.folder / f"{name}.rows"
        if path.exists():
            path.unlink()
            return True
        return False

    def save_weights(self, data: bytes) -> None:
        tmp = self.folder / "weights.bin.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.folder / "weights.bin")

    def load_weights(self) -> bytes | None:
        path = self.folder / "weights.bin"
        return path.read_bytes() if path.exists() else None

    def close(self) -> None:
        self.seal()


class ActorLink:
    """The actor's end: record transitions into the spool, send sealed batches until acked, receive weights."""

    def __init__(self, participant: Participant, spool: Spool, batch_rows: int = 64, max_batch_s: float = 1.0,
                 resend_s: float = 2.0, burst: int = 8):
        self.participant, self.spool = participant, spool
        self.batch_rows, self.max_batch_s, self.resend_s, self.burst = batch_rows, max_batch_s, resend_s, burst
        self.tx = participant.writer(TRANSITIONS, Blob, LINK)
        self.acks = participant.reader(ACKS, Blob, LINK)
        self.weights = participant.reader(WEIGHTS, Blob, LATCHED)
        self._sent: dict[str, float] = {}
        self._pending: list[Path] = []
        self._scanned = (-1, -float("inf"))  # (spool seq, time) of the last look at the folder
        self.acked = 0
        """Batches acked by a learner so far."""

    def record(self, row: np.ndarray) -> None:
        self.spool.append(row)
        if self.spool.open_rows >= self.batch_rows:
            self.spool.seal()

    def pump(self) -> Blob | None:
        """Handle acks, (re)send due batches, and return the newest weights message that arrived (or ``None``)."""
        if self.spool.open_rows and self.spool.age_s() >= self.max_batch_s:
            self.spool.seal()
        for ack in Participant.take(self.acks):
            name = _name(ack.sender, int(ack.seq))
            if self.spool.ack(name):
                self.acked += 1
            self._sent.pop(name, None)
            self._pending = [p for p in self._pending if p.stem != name]
        now, sent = time.monotonic(), 0
        if self._scanned[0] != self.spool.seq or now - self._scanned[1] >= self.resend_s:  # not a glob per step
            self._pending, self._scanned = self.spool.pending(), (self.spool.seq, now)
        for path in self._pending:
            if sent >= self.burst:
                break
            if now - self._sent.get(path.stem, -1e18) < self.resend_s:
                continue
            sender, seq = _parse(path.stem)
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # acked meanwhile
                continue
            self.tx.write(Blob(sender=sender, seq=seq, kind="transitions", data=data))
            self._sent[path.stem] = now
            sent += 1
        latest = Participant.take(self.weights, 8)
        return latest[-1] if latest else None


class LearnerLink:
    """The learner's end: store new batches (then ack), re-ack duplicates, publish weights (latched)."""

    def __init__(self, participant: Participant, folder: Path, layout: RowLayout, sender: str = "learner"):
        self.participant, self.folder, self.layout, self.sender = participant, Path(folder), layout, sender
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rx = participant.reader(TRANSITIONS, Blob, LINK)
        self.acks = participant.writer(ACKS, Blob, LINK)
        self.weights = participant.writer(WEIGHTS, Blob, LATCHED)
        self.rejected: list[str] = []
        """One line per batch refused (wrong width): it is never acked, so it stays on its actor's disk."""

    def stored(self) -> list[tuple[str, np.ndarray]]:
        """Every batch received before (a restart reloads them), oldest first."""
        paths = sorted(self.folder.glob("*.rows"), key=lambda p: (p.stat().st_mtime, p.name))
        return [(p.stem, self.layout.rows(p.read_bytes(), str(p))) for p in paths]

    def poll(self, timeout_s: float) -> list[tuple[str, np.ndarray]]:
        """Wait up to ``timeout_s`` for batches; store and ack the new ones and return them as ``(name, rows)``."""
        out: list[tuple[str, np.ndarray]] = []
        msgs = Participant.take(self.rx)
        if not msgs and timeout_s > 0 and self.participant.wait(timeout_s):
            msgs = Participant.take(self.rx)
        for msg in msgs:
            name = _name(msg.sender, int(msg.seq))
            path = self.folder / f"{name}.rows"
            if not path.exists():
                try:
                    rows = self.layout.rows(msg.data, f"batch {name}")
                except ValueError as e:
                    self.rejected.append(str(e))
                    continue
                tmp = path.with_suffix(".tmp")
                with open(tmp, "wb") as f:
                    f.write(rows.tobytes())
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(path)
                out.append((name, rows))
            self.acks.write(Blob(sender=msg.sender, seq=int(msg.seq), kind="ack"))
        return out

    def publish_weights(self, version: int, data: bytes) -> None:
        self.weights.write(Blob(sender=self.sender, seq=version, kind="weights", data=data))
