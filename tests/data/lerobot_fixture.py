"""LeRobot datasets (codebase v2.1 and v3.0) written here as LeRobot's own code lays them out, read from its source
(huggingface/lerobot ``src/lerobot/datasets/{utils,io_utils,dataset_metadata,video_utils}.py`` and
``scripts/convert_dataset_v21_to_v30.py``); the ``lerobot`` package itself pins torch < 2.11 and cannot be
installed beside this project.

Quirks reproduced: ``meta/tasks.parquet`` written by pandas with the task string as the index (LeRobot reads a
task back as ``tasks.iloc[task_index].name``); 1-D features as fixed-size lists and shape-(1,) features as scalars
(``get_hf_features_from_features``); the five default columns (timestamp float32, frame_index, episode_index,
index, task_index int64); one row group per episode; v3.0 episodes back to back in one data file and one video per
camera, located by ``dataset_from_index``/``dataset_to_index`` and ``videos/<key>/from_timestamp``; videos
encoded with PyAV as ``encode_video_frames`` does (libsvtav1, yuv420p, g=2, crf=30); ``stats.json`` with
q01..q99; v2.1's ``episodes.jsonl``/``tasks.jsonl``/``episodes_stats.jsonl`` and one parquet and video per episode
under ``chunk-000``; ``names`` as a list (v3.0) and as ``{"motors": [...]}`` (older v2.1 datasets).
Not reproduced: the ``huggingface`` schema metadata ``datasets`` adds to parquet files (LeRobot passes its features
explicitly when loading).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FPS = 10
SIZE = 64
JOINTS = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
          "gripper.pos"]


def frame_color(global_frame: int) -> np.ndarray:
    """A flat RGB frame whose colour tells which frame it is (survives lossy coding)."""
    img = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    img[..., 0] = (global_frame * 23) % 200 + 20
    img[..., 1] = (global_frame * 41) % 200 + 20
    img[..., 2] = 128
    return img


def _encode(path: Path, frames: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libsvtav1", FPS, options={"g": "2", "crf": "30"})
        stream.pix_fmt = "yuv420p"
        stream.height, stream.width = frames[0].shape[:2]
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _vec(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).reshape(-1)), values.shape[1])


def _stats(v: np.ndarray) -> dict[str, list[float]]:
    v = v.reshape(len(v), -1).astype(np.float64)
    out = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0), "count": np.array([len(v)])}
    out.update({f"q{int(q * 100):02d}": np.quantile(v, q, axis=0) for q in (0.01, 0.10, 0.50, 0.90, 0.99)})
    return {k: np.asarray(x).tolist() for k, x in out.items()}


def _video_info(size: tuple[int, int] = (SIZE, SIZE)) -> dict[str, object]:
    return {"video.height": size[0], "video.width": size[1], "video.codec": "av1", "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False, "video.fps": FPS, "video.channels": 3, "has_audio": False}


def _episode_frames(lengths: list[int], seed: int, reward: bool) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for t in lengths:
        ep = {"observation.state": rng.uniform(-90, 90, size=(t, 6)), "action": rng.uniform(-100, 100, size=(t, 6))}
        if reward:
            ep["next.reward"] = rng.uniform(0, 1, size=t)
            ep["next.done"] = np.arange(t) == t - 1
            ep["next.success"] = np.arange(t) >= t - 2
        out.append(ep)
    return out


def write_v30(root: Path, lengths: tuple[int, ...] = (7, 9, 8), tasks: tuple[str, ...] = (
        "pick up the cube", "put the cube in the bowl", "pick up the cube"), video: bool = True,
        frame: Callable[[int], np.ndarray] = frame_color) -> Path:
    """A SO-100 style v3.0 dataset: observation.state and action in degrees, one video camera ``top`` whose
    frame k (counted over the whole dataset) is ``frame(k)``."""
    size = tuple(frame(0).shape[:2])
    eps = _episode_frames(list(lengths), 0, reward=False)
    features: dict[str, dict[str, object]] = {
        "action": {"dtype": "float32", "shape": [6], "names": JOINTS},
        "observation.state": {"dtype": "float32", "shape": [6], "names": JOINTS},
    }
    if video:
        features["observation.images.top"] = {"dtype": "video", "shape": [*size, 3],
                                              "names": ["height", "width", "channels"], "info": _video_info(size)}
    features.update({k: {"dtype": d, "shape": [1], "names": None} for k, d in (
        ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
        ("task_index", "int64"))})
    task_list = list(dict.fromkeys(tasks))
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    writer = None
    ep_rows, index, frames = [], 0, []
    for e, (ep, t) in enumerate(zip(eps, lengths, strict=True)):
        table = pa.table({
            "action": _vec(ep["action"]), "observation.state": _vec(ep["observation.state"]),
            "timestamp": pa.array(np.arange(t, dtype=np.float32) / FPS), "frame_index": pa.array(np.arange(t)),
            "episode_index": pa.array(np.full(t, e)), "index": pa.array(np.arange(index, index + t)),
            "task_index": pa.array(np.full(t, task_list.index(tasks[e])))})
        writer = writer or pq.ParquetWriter(root / "data/chunk-000/file-000.parquet", table.schema)
        writer.write_table(table)
        row = {"episode_index": e, "tasks": [tasks[e]], "length": t, "data/chunk_index": 0, "data/file_index": 0,
               "dataset_from_index": index, "dataset_to_index": index + t}
        if video:
            row.update({"videos/observation.images.top/chunk_index": 0, "videos/observation.images.top/file_index": 0,
                        "videos/observation.images.top/from_timestamp": index / FPS,
                        "videos/observation.images.top/to_timestamp": (index + t) / FPS})
            frames.extend(frame(index + j) for j in range(t))
        for key in ("action", "observation.state"):
            for stat, value in _stats(ep[key]).items():
                row[f"stats/{key}/{stat}"] = value
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        ep_rows.append(row)
        index += t
    assert writer is not None
    writer.close()
    if video:
        _encode(root / "videos/observation.images.top/chunk-000/file-000.mp4", frames)
    pq.write_table(pa.Table.from_pylist(ep_rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": range(len(task_list))}, index=pd.Index(task_list, name="task")).to_parquet(
        root / "meta/tasks.parquet")
    stats = {k: _stats(np.concatenate([ep[k] for ep in eps])) for k in ("action", "observation.state")}
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    info = {"codebase_version": "v3.0", "robot_type": "so100_follower", "total_episodes": len(lengths),
            "total_frames": index, "total_tasks": len(task_list), "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if video else None,
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def write_v21(root: Path, lengths: tuple[int, ...] = (6, 8)) -> Path:
    """A PushT style v2.1 dataset: rewards, dones and successes per frame, one video camera ``image`` per
    episode, ``names`` as ``{"motors": [...]}``."""
    eps = _episode_frames(list(lengths), 1, reward=True)
    names = {"motors": JOINTS}
    features: dict[str, dict[str, object]] = {
        "observation.image": {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channel"],
                              "video_info": {"video.fps": float(FPS), "video.codec": "av1",
                                             "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                             "has_audio": False}},
        "observation.state": {"dtype": "float32", "shape": [6], "names": names},
        "action": {"dtype": "float32", "shape": [6], "names": names},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
    }
    features.update({k: {"dtype": d, "shape": [1], "names": None} for k, d in (
        ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
        ("task_index", "int64"))})
    (root / "meta").mkdir(parents=True)
    index, ep_lines, stat_lines = 0, [], []
    for e, (ep, t) in enumerate(zip(eps, lengths, strict=True)):
        table = pa.table({
            "observation.state": _vec(ep["observation.state"]), "action": _vec(ep["action"]),
            "next.reward": pa.array(ep["next.reward"].astype(np.float32)), "next.done": pa.array(ep["next.done"]),
            "next.success": pa.array(ep["next.success"]),
            "timestamp": pa.array(np.arange(t, dtype=np.float32) / FPS), "frame_index": pa.array(np.arange(t)),
            "episode_index": pa.array(np.full(t, e)), "index": pa.array(np.arange(index, index + t)),
            "task_index": pa.array(np.zeros(t, dtype=np.int64))})
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        _encode(root / f"videos/chunk-000/observation.image/episode_{e:06d}.mp4",
                [frame_color(1000 * e + j) for j in range(t)])
        ep_lines.append(json.dumps({"episode_index": e, "tasks": ["Push the T-shaped block onto the T-shaped target."],
                                    "length": t}))
        stat_lines.append(json.dumps({"episode_index": e, "stats": {k: _stats(ep[k]) for k in ("action",)}}))
        index += t
    (root / "meta/episodes.jsonl").write_text("\n".join(ep_lines) + "\n")
    (root / "meta/episodes_stats.jsonl").write_text("\n".join(stat_lines) + "\n")
    (root / "meta/tasks.jsonl").write_text(json.dumps(
        {"task_index": 0, "task": "Push the T-shaped block onto the T-shaped target."}) + "\n")
    info = {"codebase_version": "v2.1", "robot_type": None, "total_episodes": len(lengths), "total_frames": index,
            "total_tasks": 1, "total_videos": len(lengths), "total_chunks": 1, "chunks_size": 1000, "fps": FPS,
            "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root
