"""``DatasetWriter``: append episodes to one HDF5 dataset file so that a killed writer loses nothing it committed.

Each ``add_episode`` is one commit:

1. write the episode into an *anonymous* HDF5 group (``create_group(None)``): reachable from no path, so
   nothing a reader can see changes, and no node already in the file is touched;
2. ``flush``: the episode's data and metadata reach the OS (``num_samples``, the "complete" marker, among them);
3. link the group into ``/data`` as ``demo_<i>`` (one new link), ``flush``, and commit the journal.

HDF5 itself updates its metadata in place over several writes, so every write goes through a rollback journal
(``journal.py``): a writer killed at any moment leaves the file as of its last commit, plus a ``<file>-journal``
from which ``Dataset`` reads that state and ``resume=True`` restores it. (Measured on this machine by killing a
writer before each of its writes: without the journal, a kill during the commit that splits ``/data``'s B-tree
node, or during the deletions of a resume, left files that did not open; with it, every such file opened with
every committed episode. Flushing after each episode alone - 8/8 in REFERENCES.md - narrows, not closes, that
window.)

A ``demo_<i>`` group without ``num_samples`` (from another tool, or an older writer that wrote in place) is
skipped by the reader with a warning and removed by ``resume=True``. The writer holds an exclusive lock on the
file; readers opening it meanwhile get a one-line "locked" error. ``durable=True`` adds ``fsync`` so that
committed episodes also survive power loss.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode
from robot_rl.data.errors import DatasetError, DatasetWarning
from robot_rl.data.journal import JournaledFile, fsync_directory
from robot_rl.data.layout import (
    ACTIONS,
    COMPLETE_ATTR,
    DATA,
    DONES,
    FORMAT_VERSION,
    IMAGE_GROUP,
    INTERVENTIONS,
    LABEL_GROUP,
    MASK,
    NEXT_STATE,
    PRIVILEGED,
    REWARDS,
    SIM_STATE,
    STATE,
    SUCCESSES,
    TERMINALS,
    check_is_file,
    demo_index,
    demo_name,
    one_line,
    open_hdf5,
    provenance_json,
    read_header,
    split_masks,
)

_COMPRESSIONS = ("gzip", "lzf", None)


class DatasetWriter:
    """Writes episodes to ``path`` (robomimic layout, see ``layout.py``); use as a context manager.

    Args:
        path: the ``.h5`` file. It must not exist, unless ``resume=True``.
        spec: the environment the episodes come from; stored as ``/data`` attr ``env_spec``.
        source: where the episodes come from, e.g. ``"sim:metaworld/drawer-open-v3 scripted"``.
        task_text: the task sentence (default: ``spec.task_text``).
        resume: append to an existing file (after its last complete episode; incomplete ones are
            removed, masks are rewritten on close). If the file is absent, a new one is created.
        image_compression: ``"gzip"`` (smaller), ``"lzf"`` (faster) or ``None``; one frame per chunk.
        durable: also ``fsync`` at every commit, so committed episodes survive power loss too (slower).
    """

    def __init__(self, path: str | os.PathLike[str], spec: EnvSpec, source: str, task_text: str | None = None,
                 resume: bool = False, image_compression: str | None = "gzip", *, durable: bool = False) -> None:
        if image_compression not in _COMPRESSIONS:
            raise ValueError(f"image_compression must be one of {_COMPRESSIONS}, got {image_compression!r}")
        self.path = os.fspath(path)
        self.spec = spec
        self.image_compression = image_compression
        self.durable = durable
        if os.path.exists(self.path):
            if not resume:
                raise DatasetError(f"{self.path}: file exists; pass resume=True to append to it, or choose a new path")
            check_is_file(self.path)
        else:
            _create(self.path, spec, source, spec.task_text if task_text is None else task_text)
        try:
            self._io = JournaledFile(self.path, durable)
        except OSError as e:
            raise DatasetError(f"{self.path}: cannot open for writing ({one_line(e)})") from None
        if self._io.rolled_back:
            warnings.warn(f"{self.path}: rolled back a commit that an interrupted writer left unfinished",
                          DatasetWarning, stacklevel=2)
        self._file: h5py.File | None = None
        try:
            self._file = open_hdf5(self.path, "r+", fileobj=self._io)
            self._names, self._total = self._prepare()
        except BaseException:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._io.close()
            raise
        self._next = max((demo_index(n) or 0 for n in self._names), default=-1) + 1
        self._masks: dict[str, list[str]] | None = None

    @property
    def names(self) -> list[str]:
        """Committed episodes, in order (those in the file before a resume included)."""
        return list(self._names)

    @property
    def num_episodes(self) -> int:
        return len(self._names)

    def add_episode(self, episode: Episode) -> str:
        """Validate and write one episode; returns its name (``demo_<i>``). Once this returns, the
        episode survives a ``kill -9`` of this process."""
        f = self._require_open()
        name = demo_name(self._next)
        try:
            episode.validate(self.spec)
        except DatasetError as e:
            raise DatasetError(f"{self.path}: new episode {name}: {e}") from None
        group = f.create_group(None)  # anonymous until linked below
        try:
            _write_episode(group, episode, self.image_compression)
        except DatasetError as e:
            raise DatasetError(f"{self.path}: new episode {name}: {e}") from None
        f.flush()
        f[DATA][name] = group  # one new link in /data
        self._commit()
        self._names.append(name)
        self._total += episode.length
        self._next += 1
        return name

    def set_masks(self, masks: dict[str, list[str]]) -> None:
        """Write these masks on close instead of ``layout.split_masks`` (an importer keeping its source's split).
        ``masks`` maps a mask name to committed episode names and must hold ``train`` and ``valid``."""
        missing = {"train", "valid"} - set(masks)
        if missing:
            raise DatasetError(f"{self.path}: masks: {', '.join(sorted(missing))} missing")
        for mask, names in masks.items():
            unknown = [n for n in names if n not in self._names]
            if unknown:
                raise DatasetError(f"{self.path}: mask '{mask}': episode {unknown[0]} was not written")
        self._masks = {k: list(v) for k, v in masks.items()}

    def close(self) -> None:
        """Write ``/mask/train``, ``/mask/valid`` (see ``layout.split_masks``, or ``set_masks``) and ``total``,
        then close."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            train, valid = split_masks(self._names)
            masks = self._masks if self._masks is not None else {"train": train, "valid": valid}
            if MASK in f:
                del f[MASK]
            for mask, names in masks.items():
                f.create_dataset(f"{MASK}/{mask}", data=np.array([n.encode() for n in names], dtype="S"))
            f[DATA].attrs["total"] = np.int64(self._total)
            f.flush()
            self._io.commit()
        finally:
            f.close()
            self._io.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise DatasetError(f"{self.path}: writer is closed")
        return self._file

    def _commit(self) -> None:
        self._require_open().flush()
        self._io.commit()

    def _prepare(self) -> tuple[list[str], int]:
        """Check an existing file, remove incomplete episodes and stale masks; return (complete names, total)."""
        f = self._require_open()
        header = read_header(f, self.path)
        problems = self.spec.compatible_with(header.spec)
        if header.spec.name != self.spec.name:
            problems.insert(0, f"env {header.spec.name!r} != {self.spec.name!r}")
        if problems:
            raise DatasetError(f"{self.path}: cannot append: the file's environment differs ({'; '.join(problems)})")
        data = f[DATA]
        complete: list[tuple[int, str]] = []
        removed: list[str] = []
        total = 0
        for name in list(data):
            index = demo_index(name)
            if index is None:
                continue
            try:
                group = data[name]
                if isinstance(group, h5py.Group) and COMPLETE_ATTR in group.attrs:
                    complete.append((index, name))
                    total += int(group.attrs[COMPLETE_ATTR])
                    continue
                del data[name]
            except Exception as e:
                raise DatasetError(f"{self.path}: episode {name}: cannot read or remove it ({one_line(e)})") from None
            removed.append(name)
        if removed:
            warnings.warn(f"{self.path}: removed incomplete episode(s) {', '.join(removed)}", DatasetWarning,
                          stacklevel=3)
        if MASK in f:
            del f[MASK]  # rewritten on close; a file without masks is one whose writer did not finish
        self._commit()
        return [n for _, n in sorted(complete)], total


def rewrite_masks(path: str | os.PathLike[str]) -> list[str]:
    """Recompute ``/mask/train`` and ``/mask/valid`` from the complete episodes the file holds now, e.g. after
    episodes were deleted by hand (the reader refuses masks that list missing episodes). Returns the episodes."""
    path = os.fspath(path)
    check_is_file(path)
    with open_hdf5(path, "r") as f:
        header = read_header(f, path)
    writer = DatasetWriter(path, header.spec, header.source, resume=True)
    names = writer.names
    writer.close()
    return names


def _create(path: str, spec: EnvSpec, source: str, task_text: str) -> None:
    """Create an empty dataset file atomically and exclusively: a kill leaves either no file or a valid one, and of
    two writers creating the same new file at once exactly one succeeds (the file is linked into place, which fails
    when the name exists; the other gets a one-line ``DatasetError``)."""
    tmp = f"{path}.creating-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _write_empty(tmp, spec, source, task_text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise DatasetError(f"{path}: file exists (another writer created it just now); pass resume=True to "
                               "append to it, or choose a new path") from None
        except OSError:  # a file system without hard links: replace, after one more look
            if os.path.exists(path):
                raise DatasetError(f"{path}: file exists (another writer created it just now)") from None
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_directory(path)


def _write_empty(tmp: str, spec: EnvSpec, source: str, task_text: str) -> None:
    with h5py.File(tmp, "w") as f:
        data = f.create_group(DATA)
        data.attrs["format_version"] = np.int64(FORMAT_VERSION)
        data.attrs["env_spec"] = spec.to_json()
        data.attrs["task_text"] = task_text
        data.attrs["source"] = source
        data.attrs["total"] = np.int64(0)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def _write_episode(group: h5py.Group, ep: Episode, compression: str | None) -> None:
    arrays: list[tuple[str, np.ndarray]] = [
        (STATE, ep.states), (NEXT_STATE, ep.next_states), (ACTIONS, ep.actions), (REWARDS, ep.rewards),
        (DONES, ep.dones.astype(np.uint8)), (TERMINALS, ep.terminals.astype(np.uint8)),
    ]
    if ep.successes is not None:
        arrays.append((SUCCESSES, ep.successes.astype(np.uint8)))
    if ep.interventions is not None:
        arrays.append((INTERVENTIONS, ep.interventions.astype(np.uint8)))
    if ep.sim_states is not None:
        arrays.append((SIM_STATE, ep.sim_states))
    if ep.privileged is not None:
        arrays.append((PRIVILEGED, ep.privileged))
    for key, values in arrays:
        group.create_dataset(key, data=values)
    for camera, frames in ep.images.items():
        images = group.create_dataset(f"{IMAGE_GROUP}/{camera}", data=frames, chunks=(1, *frames.shape[1:]),
                                      compression=compression)
        images.attrs["every"] = np.int64(ep.image_every)
    for label_id, (values, provenance) in ep.reward_labels.items():
        label = group.create_dataset(f"{LABEL_GROUP}/{label_id}", data=values)
        label.attrs["provenance"] = provenance_json(provenance)
    attrs: dict[str, Any] = {k: v for k, v in ep.attrs.items() if k != "success"}
    for key, value in attrs.items():
        try:
            group.attrs[key] = value
        except (TypeError, ValueError) as e:
            raise DatasetError(f"attr '{key}': cannot store {type(value).__name__} as an HDF5 attr "
                               f"({one_line(e)}); use a number, string or numeric array") from None
    group.attrs["success"] = np.bool_(ep.success)
    group.attrs["seed"] = np.int64(-1 if ep.seed is None else ep.seed)
    group.attrs[COMPLETE_ATTR] = np.int64(ep.length)  # last: the "complete" marker
