"""Export a robot_rl dataset as a LeRobot v3.0 dataset directory (see ``lerobot.py`` for the layout): frames in one
data parquet with a row group per episode, ``next.reward`` with the active label's id and provenance in its feature
``info``, cameras as video (one MP4 per camera, episodes back to back) or PNG ``image`` features, stats with
LeRobot's quantiles, ``meta/tasks.parquet`` as pandas writes it (the task string as the index), and
``meta/robot_rl.json`` for an exact import back."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode
from robot_rl.data.interop.common import ConvertReport, InteropError, physical, require_new
from robot_rl.data.interop.lerobot import DEFAULT_DATA_PATH, DEFAULT_FEATURES, EPISODES_PATH, META, SCHEME, pyarrow
from robot_rl.data.interop.lerobot_video import VideoWriter, video_codec
from robot_rl.data.labels import active_label
from robot_rl.data.reader import Dataset

EXPORT_VERSION = "v3.0"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
"""LeRobot's ``DEFAULT_QUANTILES``: stats.json carries ``q01 .. q99`` beside min/max/mean/std/count."""


def export_lerobot(path: str, target: str, camera_format: str = "video", *,
                   on_progress: Callable[[int, int], None] | None = None) -> ConvertReport:
    """Write the robot_rl dataset ``path`` as a new LeRobot v3.0 dataset directory ``target`` (atomically); cameras
    as ``video`` features (MP4, SVT-AV1 as LeRobot encodes them; lossy) or ``png`` ``image`` features (lossless)."""
    if camera_format not in ("video", "png"):
        raise InteropError(f"camera format {camera_format!r}: use video or png")
    root = Path(os.path.abspath(target))
    require_new(str(root))
    pa, pq = pyarrow()
    report = ConvertReport(path, f"{SCHEME}:{root}", on_progress=on_progress)
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with Dataset(path) as ds:
            _export(ds, tmp, pa, pq, report, camera_format)
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


class _Cameras:
    """An episode's camera frames: appended to one video per camera, or PNG bytes for the frame table."""

    def __init__(self, root: Path, fps: int, codec: tuple[str, str, dict[str, str]] | None) -> None:
        self.root, self.fps, self.codec = root, fps, codec
        self.videos: dict[str, VideoWriter] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.samples: dict[str, list[np.ndarray]] = {}

    def add(self, ep: Episode, cols: dict[str, Any], pa: Any) -> dict[str, tuple[float, float]]:
        """Adds ``ep``'s frames; PNG columns go into ``cols``; returns each video's (from, to) timestamps."""
        import cv2

        spans = {}
        for cam, frames in ep.images.items():
            per_step = frames if ep.image_every == 1 else np.repeat(frames, ep.image_every, axis=0)[:ep.length]
            key = f"observation.images.{cam}"
            self.shapes[key] = tuple(per_step.shape[1:])
            self.samples.setdefault(key, []).append(
                per_step.reshape(-1, 3).astype(np.float64)[:: max(1, per_step[0].size // 3 // 64)] / 255.0)
            if self.codec is not None and per_step.shape[1] % 2 == 0 and per_step.shape[2] % 2 == 0:
                video = self.videos.get(key) or VideoWriter(
                    self.root / DEFAULT_VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0), self.fps,
                    self.codec)
                self.videos[key] = video
                spans[key] = video.add(per_step)
                continue
            pngs = [cv2.imencode(".png", np.ascontiguousarray(f[..., ::-1]))[1].tobytes() for f in per_step]
            struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image() in arrow
            cols[key] = pa.array([{"bytes": b, "path": None} for b in pngs], type=struct)
        return spans

    def close(self) -> dict[str, dict[str, Any]]:
        """Finish the videos; the ``info`` of each video feature."""
        info = {}
        for key, video in self.videos.items():
            video.close()
            info[key] = {"video.height": video.shape[0], "video.width": video.shape[1],
                         "video.codec": self.codec[1] if self.codec else "", "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False}
        return info


def _values(ep: Episode, layout: list[tuple[str, int, int, list[str]]], spec: EnvSpec, has_success: bool
            ) -> dict[str, np.ndarray]:
    t = ep.length
    values = {key: ep.states[:, a:b] for key, a, b, _ in layout}
    values["action"] = physical(ep.actions, spec)
    values["next.reward"] = ep.rewards.reshape(t, 1)
    values["next.done"] = ep.terminals.reshape(t, 1)
    if has_success:
        values["next.success"] = (ep.successes if ep.successes is not None else np.zeros(t, bool)).reshape(t, 1)
    return values


def _export(ds: Dataset, root: Path, pa: Any, pq: Any, report: ConvertReport, camera_format: str) -> None:
    spec = ds.spec
    report.total = ds.num_episodes
    fps = _fps(spec, report)
    layout = _state_layout(spec)
    label = active_label(ds.path)
    first = ds.load_episode(ds.episode_names[0]) if ds.episode_names else None
    provenance = dict(first.reward_labels.get(label, (None, {}))[1]) if (first and label) else {}
    has_success = first is not None and first.successes is not None
    codec = video_codec() if camera_format == "video" else None
    if camera_format == "video" and codec is None and spec.cameras:
        report.notes.append("no video encoder in PyAV here: cameras exported as PNG image features")
    cameras = _Cameras(root, fps, codec)
    tasks: dict[str, int] = {}
    (root / "data/chunk-000").mkdir(parents=True)
    writer = None
    sums: dict[str, list[np.ndarray]] = {}
    episodes: list[dict[str, Any]] = []
    index = 0
    for e, name in enumerate(ds.episode_names):
        ep = ds.load_episode(name, images=True)
        t = ep.length
        task = str(ep.attrs.get("task") or ds.task_text)
        values = _values(ep, layout, spec, has_success)
        cols: dict[str, Any] = {}
        for key, v in values.items():
            if key.startswith("next."):
                cols[key] = pa.array(v.reshape(t), type=pa.bool_() if v.dtype == bool else pa.float32())
            else:
                cols[key] = pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).reshape(-1)), v.shape[1])
            sums.setdefault(key, []).append(v.astype(np.float64))
        spans = cameras.add(ep, cols, pa)
        cols["timestamp"] = pa.array(np.arange(t, dtype=np.float32) / np.float32(fps), type=pa.float32())
        cols["frame_index"] = pa.array(np.arange(t, dtype=np.int64))
        cols["episode_index"] = pa.array(np.full(t, e, dtype=np.int64))
        cols["index"] = pa.array(np.arange(index, index + t, dtype=np.int64))
        cols["task_index"] = pa.array(np.full(t, tasks.setdefault(task, len(tasks)), dtype=np.int64))
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(root / DEFAULT_DATA_PATH.format(chunk_index=0, file_index=0), table.schema)
        writer.write_table(table)  # one row group per episode, as LeRobot writes them
        row: dict[str, Any] = {"episode_index": e, "tasks": [task], "length": t, "data/chunk_index": 0,
                               "data/file_index": 0, "dataset_from_index": index, "dataset_to_index": index + t,
                               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for key, (start, stop) in spans.items():
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": stop})
        for key, v in values.items():
            row.update({f"stats/{key}/{stat}": x for stat, x in _stats(v.astype(np.float64), False).items()})
        episodes.append(row)
        index += t
        report.count(t)
    if writer is not None:
        writer.close()
    video_info = cameras.close()
    features = _features(layout, spec, has_success, cameras.shapes, label, provenance, video_info)
    stats = {k: _stats(np.concatenate(v), quantiles=True) for k, v in sums.items()}
    for cam, samples in cameras.samples.items():
        stats[cam] = {s: np.asarray(x).reshape(3, 1, 1).tolist() if s != "count" else [index]
                      for s, x in _stats(np.concatenate(samples), quantiles=True).items()}
    _write_meta(root, pa, pq, spec, ds, fps, features, stats, episodes, tasks, index, label, provenance,
                bool(video_info))


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
              image_shapes: dict[str, tuple[int, ...]], label: str | None, provenance: dict[str, Any],
              video_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
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
    for key, shape in image_shapes.items():
        features[key] = {"dtype": "video" if key in video_info else "image", "shape": list(shape),
                         "names": ["height", "width", "channels"]}
        if key in video_info:
            features[key]["info"] = video_info[key]
    return {**features, **DEFAULT_FEATURES}


def _write_meta(root: Path, pa: Any, pq: Any, spec: EnvSpec, ds: Dataset, fps: int, features: dict[str, Any],
                stats: dict[str, Any], episodes: list[dict[str, Any]], tasks: dict[str, int], frames: int,
                label: str | None, provenance: dict[str, Any], has_videos: bool) -> None:
    meta = root / "meta"
    (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    info = {"codebase_version": EXPORT_VERSION, "robot_type": spec.extras.get("robot_type") or spec.name,
            "total_episodes": len(episodes), "total_frames": frames, "total_tasks": len(tasks),
            "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"}, "data_path": DEFAULT_DATA_PATH,
            "video_path": DEFAULT_VIDEO_PATH if has_videos else None,
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
