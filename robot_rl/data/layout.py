"""The on-disk layout of a dataset file (robomimic style) and the checks writer and reader share.

```
/data            attrs: format_version, env_spec (EnvSpec JSON), task_text, source, total (transitions),
                 active_reward (optional: the label id whose values are the active ``rewards``; absent: as collected)
/data/demo_<i>   attrs: num_samples (written last: the "complete" marker), success, seed (-1: none), free-form
    obs/state [T, D] f32, next_obs/state [T, D] f32, actions [T, A] f32, rewards [T] f32 (NaN: unlabeled),
    dones [T] u8 (terminated | truncated), terminals [T] u8 (terminated), successes [T] u8 (optional),
    interventions [T] u8 (optional: 1 where a person's teleop input, not the policy, chose the action),
    sim_state [T, S] f64 (optional), obs/privileged [T, P] f32 (optional),
    obs/image/<camera> [ceil(T / every), H, W, 3] u8 (optional; attr every: frame j is step j * every),
    reward_labels/<labeler_id> [T] f32 (attr provenance: JSON, keys sorted)
/mask/train, /mask/valid   demo names as bytes
```
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import h5py
import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.errors import DatasetError

FORMAT_VERSION = 1
"""Version of the layout above; readers refuse files with a newer one."""

DATA = "data"
MASK = "mask"
STATE = "obs/state"
NEXT_STATE = "next_obs/state"
ACTIONS = "actions"
REWARDS = "rewards"
DONES = "dones"
TERMINALS = "terminals"
SUCCESSES = "successes"
INTERVENTIONS = "interventions"
"""Optional per-step flag: a human took over (teleop) at that step; absent in older files = no interventions."""
SIM_STATE = "sim_state"
PRIVILEGED = "obs/privileged"
IMAGE_GROUP = "obs/image"
LABEL_GROUP = "reward_labels"
GROUND_TRUTH = "ground_truth"
"""Labeler id under which simulator ground truth is stored (it is also the active ``rewards``)."""
ACTIVE_ATTR = "active_reward"
"""``/data`` attr: the label id whose values are the active ``rewards`` (absent: as collected)."""
ORIGINAL = "original"
"""Label id under which activating another label keeps old active rewards that no other label holds."""

COMPLETE_ATTR = "num_samples"
"""Episode attr written last; a demo group without it is incomplete (a writer died while writing it)."""
RESERVED_ATTRS = frozenset({"num_samples", "success", "seed"})
VALID_EVERY = 10
"""Every ``VALID_EVERY``-th episode (by index: 9, 19, ...) goes to ``/mask/valid``, about 10 %."""

_DEMO_RE = re.compile(r"demo_(0|[1-9][0-9]*)")
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")


def demo_name(index: int) -> str:
    return f"demo_{index}"


def demo_index(name: str) -> int | None:
    """``"demo_12"`` -> 12; anything else -> ``None``."""
    m = _DEMO_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def provenance_json(provenance: dict[str, Any]) -> str:
    """The ``provenance`` attr of a reward label: JSON with sorted keys (one spelling for every writer)."""
    return json.dumps(provenance, sort_keys=True)


def check_name(what: str, name: str) -> None:
    """Camera names and labeler ids become HDF5 path components: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise DatasetError(f"{what} {name!r}: use letters, digits, '_', '.', '-' only")


def num_frames(length: int, every: int) -> int:
    """Number of stored frames K = ceil(T / every) when frame j is step j * every."""
    return -(-length // every)


def fmt_shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def shape_problem(key: str, dtype: np.dtype[Any] | str, shape: tuple[int, ...], want_dtype: str,
                  want_shape: Sequence[int | None]) -> str | None:
    """One-line description of a dtype/shape mismatch (``None`` if it matches); ``None`` in want_shape = any."""
    ok = np.dtype(dtype) == np.dtype(want_dtype) and len(shape) == len(want_shape) and all(
        w is None or w == s for s, w in zip(shape, want_shape, strict=False))
    if ok:
        return None
    return f"key '{key}': expected {want_dtype} {fmt_shape(want_shape)}, got {np.dtype(dtype)} {fmt_shape(shape)}"


def split_masks(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Deterministic ~90/10 train/valid split by episode index, stable when episodes are appended.

    ``demo_9, demo_19, ...`` are validation; there is always at least one training episode.
    """
    train = [n for n in names if (demo_index(n) or 0) % VALID_EVERY != VALID_EVERY - 1]
    valid = [n for n in names if n not in set(train)]
    if not train and valid:
        train, valid = valid[:1], valid[1:]
    return train, valid


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def open_hdf5(path: str | os.PathLike[str], mode: str, fileobj: Any = None) -> h5py.File:
    """Open ``path`` (through ``fileobj`` if given, h5py's ``fileobj`` driver); any failure becomes a one-line
    ``DatasetError`` naming the file and the cause."""
    where = os.fspath(path)
    check_is_file(where)
    try:
        return h5py.File(where if fileobj is None else fileobj, mode)
    except Exception as e:  # h5py raises OSError for most, but not all, failures to open
        raise DatasetError(f"{where}: {_open_failure(e, os.path.getsize(where))}") from None


def check_is_file(where: str) -> None:
    if not os.path.exists(where):
        raise DatasetError(f"{where}: no such file")
    if os.path.isdir(where):
        raise DatasetError(f"{where}: is a directory, not an HDF5 file")


def _open_failure(exc: BaseException, size: int) -> str:
    text = one_line(exc)
    low = text.lower()
    if size == 0:
        return "empty file (0 bytes), not an HDF5 file"
    if "signature not found" in low or "unable to find a valid file signature" in low:
        return "not an HDF5 file (no HDF5 signature)"
    m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if m:
        return f"truncated file: {m.group(1)} bytes on disk, the file says it has {m.group(2)}"
    if "lock" in low:
        return f"file is locked (is a writer still running on it?): {text}"
    if "permission denied" in low:
        return f"permission denied: {text}"
    return f"cannot open as HDF5 (corrupt or truncated file?): {text}"



class Header(NamedTuple):
    """The attrs of ``/data``."""

    spec: EnvSpec
    task_text: str
    source: str


def read_header(f: h5py.File, where: str) -> Header:
    """Check ``/data`` and its attrs; ``DatasetError`` naming the file and attr if anything is off."""
    data = f.get(DATA)
    if not isinstance(data, h5py.Group):
        raise DatasetError(f"{where}: no /{DATA} group (not a robot_rl / robomimic-style dataset)")
    attrs = data.attrs
    if "format_version" not in attrs:
        foreign = "env_spec" not in attrs and (
            "env_args" in attrs or any(isinstance(g, h5py.Group) and "obs" in g for g in data.values()))
        hint = (f"; it looks like a robomimic file: robot-rl import robomimic:{where} --out NEW.h5, or relabel it "
                f"in place with robot-rl relabel robomimic:{where}") if foreign else ""
        raise DatasetError(f"{where}: /{DATA} attr 'format_version': missing{hint}")
    version = attrs["format_version"]
    if not isinstance(version, int | np.integer) or int(version) != FORMAT_VERSION:
        newer = isinstance(version, int | np.integer) and int(version) > FORMAT_VERSION
        hint = " (written by a newer robot_rl; upgrade)" if newer else ""
        raise DatasetError(f"{where}: /{DATA} attr 'format_version': expected {FORMAT_VERSION}, "
                           f"got {plain(version)!r}{hint}")
    if "env_spec" not in attrs:
        raise DatasetError(f"{where}: /{DATA} attr 'env_spec': missing")
    try:
        spec = EnvSpec.from_json(_as_str(attrs["env_spec"]))
    except Exception as e:  # from_json raises KeyError/TypeError/ValueError/JSONDecodeError on bad input
        raise DatasetError(f"{where}: /{DATA} attr 'env_spec': not a valid EnvSpec JSON ({one_line(e)})") from None
    return Header(spec, _as_str(attrs.get("task_text", spec.task_text)), _as_str(attrs.get("source", "")))


def plain(value: Any) -> Any:
    """HDF5 attr value -> plain Python (bytes -> str, numpy scalar -> int/float/bool)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
