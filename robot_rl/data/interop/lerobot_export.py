"""Export a robot_rl dataset as a LeRobot v3.0 dataset directory (see ``lerobot.py`` for the layout): frames in one
data parquet with a row group per episode, ``next.reward`` with the active label's id and provenance in its feature
``info``, cameras as PNG ``image`` features, stats with LeRobot's quantiles, ``meta/tasks.parquet`` as pandas writes
it (the task string as the index), and ``meta/robot_rl.json`` for an exact import back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.interop.common import ConvertReport, physical, require_new
from robot_rl.data.interop.lerobot import DEFAULT_DATA_PATH, DEFAULT_FEATURES, EPISODES_PATH, META, SCHEME, pyarrow
from robot_rl.data.labels import active_label
from robot_rl.data.reader import Dataset

EXPORT_VERSION = "v3.0"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
"""LeRobot's ``DEFAULT_QUANTILES``: stats.json carries ``q01 .. q99`` beside min/max/mean/std/count."""


def export_lerobot(path: str, target: str) -> ConvertReport:
    """Write the robot_rl dataset ``path`` as a new LeRobot v3.0 dataset directory ``target`` (atomically)."""
    root = Path(os.path.abspath(target))
    require_new(str(root))
    pa, pq = pyarrow()
    report = ConvertReport(path, f"{SCHEME}:{root}")
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with Dataset(path) as ds:
            _export(ds, tmp, pa, pq, report)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return report


def _fps(spec: EnvSpec, report: ConvertReport) -> int:
    if spec.control_hz > 0 and abs(spec.control_hz - round(spec.control_hz)) < 1e-6:
        return int(round(spec.control_hz))
    fps = max(1, int(round(spec.control_hz))) if spec.control_hz > 0 else 10
    report.notes.append(f"fps {fps}: LeRobot needs a whole number, the dataset's control rate is {spec.control_hz}")
    return fps


def _state_layout(spec: EnvSpec) -> list[tuple[str, int, int, list[str]]]:
    """(feature, start, stop, per-dimension names) of the exported observation features."""
    split = spec.extras.get("lerobot_state_features")
    names = list(spec.extras.get("state_names") or [])
    if len(names) != spec.state_dim:
        names = [f"state.{i}" for i in range(spec.state_dim)]
        for s in spec.state_slices:
            for i in range(s.start, s.stop):
                names[i] = s.name if s.size == 1 else f"{s.name}.{i - s.start}"
    if isinstance(split, list) and len(split) == len(spec.state_slices):
        out = []
        for key, s in zip(split, sorted(spec.state_slices, key=lambda s: s.start), strict=True):
            out.append((str(key), s.start, s.stop, names[s.start:s.stop]))
        if out and out[-1][2] == spec.state_dim:
            return out
    return [("observation.state", 0, spec.state_dim, names)]


def _export(ds: Dataset, root: Path, pa: Any, pq: Any, report: ConvertReport) -> None:
    import cv2

    spec = ds.spec
    fps = _fps(spec, report)
    layout = _state_layout(spec)
    label = active_label(ds.path)
    first = ds.load_episode(ds.episode_names[0]) if ds.episode_names else None
    provenance = dict(first.reward_labels.get(label, (None, {}))[1]) if (first and label) else {}
    has_success = first is not None and first.successes is not None
    tasks: dict[str, int] = {}
    (root / "data/chunk-000").mkdir(parents=True)
    writer = None
    sums: dict[str, list[np.ndarray]] = {}
    episodes: list[dict[str, Any]] = []
    image_shapes: dict[str, tuple[int, ...]] = {}
    index = 0
    for e, name in enumerate(ds.episode_names):
        ep = ds.load_episode(name, images=True)
        t = ep.length
        task = str(ep.attrs.get("task") or ds.task_text)
        task_index = tasks.setdefault(task, len(tasks))
        cols: dict[str, Any] = {}
        values: dict[str, np.ndarray] = {}
        for key, a, b, _ in layout:
            values[key] = ep.states[:, a:b]
        values["action"] = physical(ep.actions, spec)
        values["next.reward"] = ep.rewards.reshape(t, 1)
        values["next.done"] = ep.terminals.reshape(t, 1)
        if has_success:
            values["next.success"] = (ep.successes if ep.successes is not None else np.zeros(t, bool)).reshape(t, 1)
        for key, v in values.items():
            if key.startswith("next."):
                cols[key] = pa.array(v.reshape(t), type=pa.bool_() if v.dtype == bool else pa.float32())
            else:
                cols[key] = pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).reshape(-1)), v.shape[1])
            sums.setdefault(key, []).append(v.astype(np.float64))
        for cam, frames in ep.images.items():
            per_step = frames if ep.image_every == 1 else np.repeat(frames, ep.image_every, axis=0)[:t]
            image_shapes[cam] = tuple(per_step.shape[1:])
            pngs = [cv2.imencode(".png", np.ascontiguousarray(f[..., ::-1]))[1].tobytes() for f in per_step]
            struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image() in arrow
            cols[f"observation.images.{cam}"] = pa.array([{"bytes": b, "path": None} for b in pngs], type=struct)
            sums.setdefault(f"observation.images.{cam}", []).append(
                per_step.reshape(-1, 3).astype(np.float64)[:: max(1, per_step[0].size // 3 // 64)] / 255.0)
        cols["timestamp"] = pa.array(np.arange(t, dtype=np.float32) / np.float32(fps), type=pa.float32())
        cols["frame_index"] = pa.array(np.arange(t, dtype=np.int64))
        cols["episode_index"] = pa.array(np.full(t, e, dtype=np.int64))
        cols["index"] = pa.array(np.arange(index, index + t, dtype=np.int64))
        cols["task_index"] = pa.array(np.full(t, task_index, dtype=np.int64))
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(root / DEFAULT_DATA_PATH.format(chunk_index=0, file_index=0), table.schema)
        writer.write_table(table)  # one row group per episode, as LeRobot writes them
        row: dict[str, Any] = {"episode_index": e, "tasks": [task], "length": t, "data/chunk_index": 0,
                               "data/file_index": 0, "dataset_from_index": index, "dataset_to_index": index + t,
                               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for key, v in values.items():
            for stat, value in _stats(v.astype(np.float64), quantiles=False).items():
                row[f"stats/{key}/{stat}"] = value
        episodes.append(row)
        index += t
        report.episodes += 1
        report.steps += t
    if writer is not None:
        writer.close()
    features = _features(layout, spec, has_success, image_shapes, label, provenance)
    stats = {k: _stats(np.concatenate(v), quantiles=True) for k, v in sums.items()}
    for k in stats:
        if k.startswith("observation.images."):
            stats[k] = {s: np.asarray(v).reshape(3, 1, 1).tolist() if s != "count" else v
                        for s, v in stats[k].items()}
    _write_meta(root, pa, pq, spec, ds, fps, features, stats, episodes, tasks, index, label, provenance)


def _stats(v: np.ndarray, quantiles: bool) -> dict[str, Any]:
    v = v.reshape(len(v), -1)
    finite = np.where(np.isfinite(v), v, np.nan)
    with np.errstate(all="ignore"):
        out: dict[str, Any] = {
            "min": np.nanmin(finite, axis=0).tolist(), "max": np.nanmax(finite, axis=0).tolist(),
            "mean": np.nanmean(finite, axis=0).tolist(), "std": np.nanstd(finite, axis=0).tolist(),
            "count": [int(len(v))]}
        if quantiles:
            for q in QUANTILES:
                out[f"q{int(round(q * 100)):02d}"] = np.nanquantile(finite, q, axis=0).tolist()
    return {k: [None if isinstance(x, float) and np.isnan(x) else x for x in val] for k, val in out.items()}


def _features(layout: list[tuple[str, int, int, list[str]]], spec: EnvSpec, has_success: bool,
              image_shapes: dict[str, tuple[int, ...]], label: str | None, provenance: dict[str, Any]
              ) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for key, a, b, names in layout:
        features[key] = {"dtype": "float32", "shape": [b - a], "names": names}
    features["action"] = {"dtype": "float32", "shape": [spec.action.dim],
                          "names": list(spec.action.names) or [f"action.{i}" for i in range(spec.action.dim)]}
    reward: dict[str, Any] = {"dtype": "float32", "shape": [1], "names": None}
    if label is not None:
        reward["info"] = {"robot_rl_label": label, "provenance": provenance}
    features["next.reward"] = reward
    features["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    if has_success:
        features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    for cam, shape in image_shapes.items():
        features[f"observation.images.{cam}"] = {"dtype": "image", "shape": list(shape),
                                                  "names": ["height", "width", "channels"]}
    return {**features, **DEFAULT_FEATURES}


def _write_meta(root: Path, pa: Any, pq: Any, spec: EnvSpec, ds: Dataset, fps: int, features: dict[str, Any],
                stats: dict[str, Any], episodes: list[dict[str, Any]], tasks: dict[str, int], frames: int,
                label: str | None, provenance: dict[str, Any]) -> None:
    meta = root / "meta"
    (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    info = {"codebase_version": EXPORT_VERSION, "robot_type": spec.extras.get("robot_type") or spec.name,
            "total_episodes": len(episodes), "total_frames": frames, "total_tasks": len(tasks),
            "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"}, "data_path": DEFAULT_DATA_PATH, "video_path": None,
            "features": features}
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    (meta / "stats.json").write_text(json.dumps(stats, indent=4))
    if episodes:
        pq.write_table(pa.Table.from_pylist(episodes), root / EPISODES_PATH)
    # meta/tasks.parquet as pandas writes a DataFrame indexed by the task string (LeRobot's write_tasks):
    pandas_meta = {"index_columns": ["task"], "column_indexes": [{"name": None, "field_name": None,
                   "pandas_type": "unicode", "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "task", "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None}],
                   "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    ordered = sorted(tasks.items(), key=lambda kv: kv[1])
    table = pa.table({"task_index": pa.array([i for _, i in ordered], type=pa.int64()),
                      "task": pa.array([t for t, _ in ordered], type=pa.string())})
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}),
                   meta / "tasks.parquet")
    (root / META).write_text(json.dumps({"env_spec": spec.to_json(), "source": ds.source, "exported_from": ds.path,
                                         "reward_label": label, "reward_provenance": provenance}, indent=2))
