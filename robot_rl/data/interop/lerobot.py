"""LeRobot datasets in and out: codebase v2.1 and v3.0 in, v3.0 out (as LeRobot's ``lerobot_dataset.py``,
``dataset_metadata.py``, ``io_utils.py`` and ``utils.py`` lay them out).

v3.0: ``meta/info.json`` (fps, features, ``data_path``/``video_path`` templates), ``meta/tasks.parquet`` (index:
the task string, column ``task_index``), ``meta/episodes/chunk-*/file-*.parquet`` (``episode_index``, ``tasks``,
``length``, ``dataset_from_index``/``dataset_to_index``, ``videos/<key>/{chunk_index,file_index,from_timestamp,
to_timestamp}``, ``stats/<feature>/<stat>``), ``meta/stats.json``, frames in ``data/chunk-*/file-*.parquet`` (one
row per frame: features, ``timestamp``, ``frame_index``, ``episode_index``, ``index``, ``task_index``), one video
per camera and file holding several episodes back to back. v2.1: ``meta/episodes.jsonl``, ``meta/tasks.jsonl``,
``meta/episodes_stats.jsonl``, one parquet and one video per episode (``episode_chunk`` in the templates).

Import: 1-D numeric ``observation.*`` features become the state (``observation.state`` first, then by name; or
as ``obs_keys`` says), one named slice each (the name without ``observation.``); ``action`` the actions
(normalized from their range if outside ``[-1, 1]``); ``next.reward`` the active rewards and a label;
``next.done`` the terminals; ``next.success`` the successes; ``image`` features (PNG in the parquet) and ``video``
features (decoded once with PyAV, at ``image_size`` if given) the cameras; the task strings the dataset's task
and each episode's ``task`` attr. LeRobot keeps no observation after the last frame: the next state is the
following frame's, and the last frame repeats its own (episode attr ``next_obs_from_shift``).

Export writes v3.0: ``observation.state`` (or the features an import split), ``action`` in the source's units,
``next.reward`` (the active rewards; the label id and provenance in the feature's ``info``), ``next.done``,
``next.success``, cameras as ``video`` features (one MP4 per camera, episodes back to back, SVT-AV1 as LeRobot
encodes them) or PNG ``image`` features, one data parquet with a row group per episode, stats, and
``meta/robot_rl.json`` (the ``EnvSpec`` and provenance) so that importing it back is exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode
from robot_rl.data.interop.common import (
    ConvertReport,
    InteropError,
    action_scaling,
    build_spec,
    normalize,
    require_new,
    require_path,
    state_keys,
    with_task,
)
from robot_rl.data.interop.lerobot_video import Videos, resize
from robot_rl.data.layout import GROUND_TRUTH, one_line
from robot_rl.data.writer import DatasetWriter

SCHEME = "lerobot"
VERSIONS = ("v2.1", "v3.0")
META = "meta/robot_rl.json"
"""What an export adds beside LeRobot's own metadata (LeRobot ignores the file)."""
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InteropError("LeRobot datasets need pyarrow: pip install 'robot_rl[interop]'") from None
    return pa, pq


def _load_json(path: Path, root: Path) -> Any:
    if not path.is_file():
        raise InteropError(f"{root}: no {path.relative_to(root)} (not a LeRobot dataset)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InteropError(f"{path}: not valid JSON ({e})") from None


def _jsonl(path: Path, root: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InteropError(f"{root}: no {path.relative_to(root)} (a v2.1 LeRobot dataset has one)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise InteropError(f"{path}: line {n}: not valid JSON ({e})") from None
    return rows


# ---- import -----------------------------------------------------------------------------------------------------


def import_dataset(target: str, out: str, *, obs_keys: Sequence[str] | None = None, task_text: str | None = None,
                   image_compression: str | None = "gzip", image_size: tuple[int, int] | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Import the LeRobot dataset directory ``target`` (v2.1 or v3.0) into a new robot_rl dataset ``out``."""
    root = Path(require_path(target, "LeRobot dataset directory", directory=True))
    require_new(out)
    pa, pq = pyarrow()
    info = _load_json(root / "meta/info.json", root)
    version = info.get("codebase_version") if isinstance(info, dict) else None
    if version not in VERSIONS:
        raise InteropError(f"{root}/meta/info.json: codebase_version {version!r}: supported {', '.join(VERSIONS)}")
    features: dict[str, dict[str, Any]] = info.get("features") or {}
    fps = float(info.get("fps") or 0)
    if "action" not in features:
        raise InteropError(f"{root}/meta/info.json: features: no 'action'")
    episodes = _episodes(root, info, version)
    tasks = _tasks(root, version)
    cams = [k for k, f in features.items() if f.get("dtype") in ("image", "video")]
    frames, files = _read_frames(root, pq, pa, {k for k in cams if features[k].get("dtype") == "image"})
    report = ConvertReport(f"{SCHEME}:{root}", out, total=len(episodes), on_progress=on_progress)
    stored = _stored_meta(root)
    keys = _state_features(features, obs_keys, root)
    order, bounds = _episode_rows(frames, root)
    actions_all = _matrix(frames, "action", root)
    spec = _spec(root, info, features, keys, cams, actions_all, episodes, tasks, task_text, stored, report,
                 image_size)
    label_id, provenance = _reward_label(root, features, stored)
    decoder = Videos(root, info, version, fps, image_size)
    pngs = _ImageColumns(files, image_size, root)
    try:
        spec = with_task(spec, task_text)
        report.task_text = spec.task_text
        with DatasetWriter(out, spec, source=report.source, task_text=spec.task_text,
                           image_compression=image_compression) as writer:
            for ep in episodes:
                index = int(ep["episode_index"])
                if index not in bounds:
                    raise InteropError(f"{root}: episode {index}: no frames in data/ (meta lists it)")
                rows = order[bounds[index][0]:bounds[index][1]]
                episode = _episode(frames, rows, ep, keys, cams, features, spec, tasks, decoder, pngs, label_id,
                                   provenance, root)
                writer.add_episode(episode)
                report.count(episode.length)
    finally:
        decoder.close()
    if any(features[c].get("dtype") == "video" for c in cams):
        report.notes.append(f"decoded {decoder.frames} video frames with PyAV")
    return report


def _episodes(root: Path, info: dict[str, Any], version: str) -> list[dict[str, Any]]:
    if version == "v2.1":
        rows = _jsonl(root / "meta/episodes.jsonl", root)
    else:
        _, pq = pyarrow()
        files = sorted((root / "meta/episodes").glob("*/*.parquet"))
        if not files:
            raise InteropError(f"{root}: no meta/episodes/chunk-*/file-*.parquet (a v3.0 LeRobot dataset has them)")
        rows = []
        for f in files:
            keep = [c for c in pq.read_schema(f).names if not c.startswith("stats/")]  # stats: most of the file
            rows.extend(pq.read_table(f, columns=keep).to_pylist())
    for row in rows:
        if "episode_index" not in row:
            raise InteropError(f"{root}: meta/episodes: a row without 'episode_index'")
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def _tasks(root: Path, version: str) -> dict[int, str]:
    if version == "v2.1":
        path = root / "meta/tasks.jsonl"
        return {int(r["task_index"]): str(r["task"]) for r in _jsonl(path, root)} if path.is_file() else {}
    path = root / "meta/tasks.parquet"
    if not path.is_file():
        return {}
    _, pq = pyarrow()
    table = pq.read_table(path)  # pandas wrote it: the task string is the index column, named "task"
    names = "task" if "task" in table.column_names else "__index_level_0__"
    if names not in table.column_names or "task_index" not in table.column_names:
        raise InteropError(f"{path}: expected columns task_index and task (the index)")
    return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(), table.column(names).to_pylist(),
                                            strict=True)}


def _read_frames(root: Path, pq: Any, pa: Any, images: set[str]) -> tuple[Any, list[Path]]:
    """Every frame's columns but the embedded images (read per episode, ``_ImageColumns``), with ``__file`` and
    ``__row``: where each frame lies."""
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise InteropError(f"{root}: no data/chunk-*/*.parquet frames")
    try:
        tables = []
        for i, f in enumerate(files):
            names = [n for n in pq.read_schema(f).names if n not in images]
            table = pq.read_table(f, columns=names)
            table = table.append_column("__file", pa.array(np.full(len(table), i, dtype=np.int32)))
            tables.append(table.append_column("__row", pa.array(np.arange(len(table), dtype=np.int64))))
        return pa.concat_tables(tables, promote_options="permissive"), files
    except Exception as e:  # pyarrow raises ArrowInvalid and friends on damaged or mismatched files
        raise InteropError(f"{root}/data: cannot read the frames ({one_line(e)})") from None


def _column(frames: Any, key: str, root: Path) -> Any:
    if key not in frames.column_names:
        raise InteropError(f"{root}/data: column '{key}' missing (meta/info.json lists it)")
    return frames.column(key).combine_chunks()


def _matrix(frames: Any, key: str, root: Path) -> np.ndarray:
    """A vector (or scalar) column as float ``[N, D]``."""
    col = _column(frames, key, root)
    n = len(col)
    if n == 0:
        return np.zeros((0, 1))
    import pyarrow as pa

    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        if flat.size % n:
            raise InteropError(f"{root}/data: column '{key}': rows of different lengths")
        return np.asarray(flat, dtype=np.float64).reshape(n, -1)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(n, 1)


def _episode_rows(frames: Any, root: Path) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """Rows sorted by (episode, frame) and each episode's ``[start, stop)`` in that order."""
    ep = np.asarray(_column(frames, "episode_index", root).to_numpy(zero_copy_only=False), dtype=np.int64)
    fi = np.asarray(_column(frames, "frame_index", root).to_numpy(zero_copy_only=False), dtype=np.int64)
    order = np.lexsort((fi, ep))
    sorted_ep = ep[order]
    starts = np.flatnonzero(np.r_[True, sorted_ep[1:] != sorted_ep[:-1]])
    stops = np.r_[starts[1:], len(order)]
    return order, {int(sorted_ep[a]): (int(a), int(b)) for a, b in zip(starts, stops, strict=True)}


def _state_features(features: dict[str, dict[str, Any]], obs_keys: Sequence[str] | None, root: Path) -> list[str]:
    lowdim = [k for k, f in features.items() if k.startswith("observation.") and f.get("dtype") not in
              ("image", "video", "string") and len(f.get("shape") or ()) == 1]
    if obs_keys:
        full = [k if k in features else f"observation.{k}" for k in obs_keys]
        for k in full:
            if k not in lowdim:
                raise InteropError(f"{root}/meta/info.json: features: '{k}': no such 1-D observation feature "
                                   f"(known: {', '.join(lowdim) or 'none'})")
        return full
    lowdim.sort(key=lambda k: (k != "observation.state", k))
    if not lowdim:
        raise InteropError(f"{root}/meta/info.json: features: no 1-D observation.* feature to make a state from")
    return lowdim


def _names(feature: dict[str, Any]) -> list[str]:
    names = feature.get("names")
    if isinstance(names, dict):  # {"motors": [...]} in older datasets
        names = next(iter(names.values()), None)
    return [str(n) for n in names] if isinstance(names, list) else []


def _stored_meta(root: Path) -> dict[str, Any]:
    path = root / META
    return _load_json(path, root) if path.is_file() else {}


def _spec(root: Path, info: dict[str, Any], features: dict[str, dict[str, Any]], keys: list[str], cams: list[str],
          actions: np.ndarray, episodes: list[dict[str, Any]], tasks: dict[int, str], task_text: str | None,
          stored: dict[str, Any], report: ConvertReport, image_size: tuple[int, int] | None) -> EnvSpec:
    if "env_spec" in stored:
        try:
            spec = EnvSpec.from_json(stored["env_spec"])
        except Exception as e:  # a damaged meta/robot_rl.json
            raise InteropError(f"{root}/{META}: env_spec: not a valid EnvSpec JSON ({one_line(e)})") from None
        return spec
    layout = state_keys([(k.removeprefix("observation."), tuple(features[k]["shape"])) for k in keys])
    scale, offset, rescaled = action_scaling(actions, f"{root}/data: action")
    if rescaled:
        report.notes.append("actions outside [-1, 1]: normalized per dimension from their range "
                            "(ActionSpec scale/offset; export restores them)")
    texts = sorted(set(tasks.values()))
    if task_text is None:
        task_text = tasks[min(tasks)] if tasks else ""
        if len(texts) > 1:
            report.notes.append(f"{len(texts)} tasks: the first is the dataset's task, each episode's is its "
                                "'task' attr")
    shapes = {}
    for c in cams:
        shape = tuple(int(x) for x in features[c].get("shape", ()))
        if len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
            shape = (shape[1], shape[2], shape[0])  # (C, H, W) in some older datasets
        shapes[_camera(c)] = (*image_size, 3) if image_size else shape
    lengths = [int(e.get("length") or 0) for e in episodes]
    extras = {"import": {"format": SCHEME, "path": str(root), "codebase_version": info.get("codebase_version")},
              "lerobot_state_features": keys, "robot_type": info.get("robot_type")}
    state_names = [n for k in keys for n in (_names(features[k]) or [f"{k}.{i}" for i in range(
        int(np.prod(features[k]["shape"])))])]
    extras["state_names"] = state_names
    name = f"lerobot/{info.get('robot_type') or root.name}"
    return build_spec(name, layout, actions.shape[1], scale, offset, action_names=_names(features["action"]),
                      control_hz=float(info.get("fps") or 0), task_text=task_text,
                      max_episode_steps=max(lengths, default=1), cameras=[_camera(c) for c in cams],
                      image_shapes=shapes, extras=extras, description="LeRobot observation features, end to end")


def _camera(key: str) -> str:
    """``observation.images.top`` -> ``top`` (an HDF5 path component)."""
    name = key.removeprefix("observation.images.").removeprefix("observation.image.").removeprefix("observation.")
    return name.replace("/", "_") or "image"


def _reward_label(root: Path, features: dict[str, dict[str, Any]], stored: dict[str, Any]
                  ) -> tuple[str, dict[str, Any]]:
    info = features.get("next.reward", {}).get("info") or {}
    label = str(info.get("robot_rl_label") or stored.get("reward_label") or GROUND_TRUTH)
    provenance = info.get("provenance") or stored.get("reward_provenance") or {
        "labeler": GROUND_TRUTH, "source": f"{SCHEME}:{root}", "key": "next.reward"}
    return label, dict(provenance)


def _episode(frames: Any, rows: np.ndarray, ep: dict[str, Any], keys: list[str], cams: list[str],
             features: dict[str, dict[str, Any]], spec: EnvSpec, tasks: dict[int, str], decoder: Videos,
             pngs: _ImageColumns, label_id: str, provenance: dict[str, Any], root: Path) -> Episode:
    t = len(rows)
    index = int(ep["episode_index"])
    if ep.get("length") is not None and int(ep["length"]) != t:
        raise InteropError(f"{root}: episode {index}: meta says length {ep['length']}, data/ holds {t} frames")
    take = frames.take(rows)
    states = np.concatenate([_matrix(take, k, root) for k in keys], axis=1).astype(np.float32)
    actions = normalize(_matrix(take, "action", root), np.asarray(spec.action.scale), np.asarray(spec.action.offset))
    rewards = np.full(t, np.nan, dtype=np.float32)
    labels: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    if "next.reward" in take.column_names:
        rewards = _matrix(take, "next.reward", root).reshape(t).astype(np.float32)
        labels[label_id] = (rewards.copy(), provenance)
    terminals = np.zeros(t, dtype=bool)
    if "next.done" in take.column_names:
        terminals = _matrix(take, "next.done", root).reshape(t).astype(bool)
    dones = terminals.copy()
    dones[-1] = True
    successes = _matrix(take, "next.success", root).reshape(t).astype(bool) \
        if "next.success" in take.column_names else None
    task_ids = sorted(set(_matrix(take, "task_index", root).reshape(t).astype(int).tolist())) \
        if "task_index" in take.column_names else []
    episode_tasks = [tasks[i] for i in task_ids if i in tasks] or [str(x) for x in ep.get("tasks") or []]
    images = {}
    for c in cams:
        if features[c].get("dtype") == "image":
            images[_camera(c)] = pngs.episode(take, c)
        else:
            images[_camera(c)] = decoder.episode(c, ep, t)
    attrs = {"source_episode": index, "task": " | ".join(episode_tasks), "next_obs_from_shift": True}
    return Episode(states=states, actions=actions, rewards=rewards,
                   next_states=np.concatenate([states[1:], states[-1:]], axis=0), terminals=terminals, dones=dones,
                   successes=successes, images=images, reward_labels=labels, attrs=attrs)


class _ImageColumns:
    """Decodes ``image`` features (PNG/JPEG bytes embedded in the parquet), reading one data file's image column at
    a time: a dataset's images never sit in memory all at once."""

    def __init__(self, files: list[Path], size: tuple[int, int] | None, root: Path) -> None:
        self.files, self.size, self.root = files, size, root
        self._cached: tuple[tuple[int, str], Any] = ((-1, ""), None)

    def _column(self, file: int, key: str) -> Any:
        if self._cached[0] != (file, key):
            _, pq = pyarrow()
            self._cached = ((file, key), pq.read_table(self.files[file], columns=[key]).column(key))
        return self._cached[1]

    def episode(self, take: Any, key: str) -> np.ndarray:
        import cv2

        where = np.asarray(take.column("__file").to_numpy(), dtype=np.int64)
        rows = np.asarray(take.column("__row").to_numpy(), dtype=np.int64)
        out = []
        for file, row in zip(where, rows, strict=True):
            cell = self._column(int(file), key)[int(row)].as_py()
            raw = cell.get("bytes") if isinstance(cell, dict) else cell
            name = f"{self.files[int(file)]}: '{key}' row {int(row)}"
            if not raw:
                raise InteropError(f"{name}: no embedded image bytes (an image path only)")
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise InteropError(f"{name}: not a decodable image")
            out.append(resize(img[..., ::-1], self.size))
        return np.stack(out).astype(np.uint8)


def export_dataset(path: str, target: str, camera_format: str = "video", *,
                   on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Write the robot_rl dataset ``path`` as a new LeRobot v3.0 dataset directory ``target`` (``lerobot_export``);
    cameras as ``video`` (MP4, as LeRobot encodes them) or ``png`` (lossless image features)."""
    from robot_rl.data.interop.lerobot_export import export_lerobot

    return export_lerobot(path, target, camera_format, on_progress=on_progress)
