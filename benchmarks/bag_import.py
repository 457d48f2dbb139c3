"""Import throughput of ``robot-rl import-bag`` on a 640x480 rgb8 camera bag.

    python benchmarks/bag_import.py [--frames 300] [--repeats 3]

Writes one bag per storage (rosbag2 sqlite3 and mcap): ``--frames`` rgb8 640x480 frames at 30 Hz (a smooth
gradient plus noise, so compression has real work), joint states at 100 Hz (6 joints), Float64MultiArray
commands at 30 Hz. Imports it at control_hz 30 (every frame becomes a step) with each image compression.
Rows: read + sync only (``read_bag`` + ``build_episodes``), and the full import with the HDF5 write.
Frames/s = image frames stored / seconds; best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.data.bags, the bag writer

from robot_rl.data.bag_import import BagSpec, build_episodes, import_bag, read_bag  # noqa: E402
from tests.data.bags import float_array, image, joint_state, write_bag  # noqa: E402

NAMES = ("j1", "j2", "j3", "j4", "j5", "j6")


def make_bag(path: Path, storage: str, frames: int) -> Path:
    rng = np.random.default_rng(0)
    base = (np.add.outer(np.arange(480), np.arange(640)) // 5 % 256).astype(np.uint8)
    msgs = []
    seconds = (frames - 1) / 30
    for k in range(int(np.ceil(seconds * 100)) + 1):  # joints cover the last frame
        t = k / 100
        msgs.append(("/joint_states", "sensor_msgs/msg/JointState", t,
                     joint_state(t, NAMES, np.sin(t + np.arange(6)))))
    for k in range(frames):
        t = k / 30
        noise = rng.integers(0, 8, (480, 640, 3), dtype=np.uint8)
        rgb = np.stack([base + np.uint8(k % 256), base, base // 2], axis=2) + noise
        msgs.append(("/cam", "sensor_msgs/msg/Image", t, image(t, rgb)))
        msgs.append(("/cmd", "std_msgs/msg/Float64MultiArray", t, float_array(np.cos(t + np.arange(6)))))
    return write_bag(path, sorted(msgs, key=lambda m: m[2]), storage)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec = BagSpec.from_dict({"control_hz": 30, "sync_tolerance": 0.02, "joints": {"topic": "/joint_states"},
                              "cameras": {"cam": "/cam"}, "actions": {"topic": "/cmd"}})
    print(f"{'bag':8} {'what':28} {'frames':>6} {'s':>7} {'frames/s':>9} {'MB/s in':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("sqlite3", "mcap"):
            bag = make_bag(Path(tmp) / storage, storage, args.frames)
            size = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
            rows: list[tuple[str, str | None]] = [("read + sync", "skip"), ("import, gzip", "gzip"),
                                                  ("import, lzf", "lzf"), ("import, no compression", None)]
            for what, compression in rows:
                best, frames = float("inf"), 0
                for r in range(args.repeats):
                    out = Path(tmp) / f"{storage}-{r}.h5"
                    start = time.perf_counter()
                    if compression == "skip":
                        episodes, _, _ = build_episodes(read_bag(bag, spec), spec)
                        frames = sum(len(e.images["cam"]) for e in episodes)
                    else:
                        frames = import_bag(bag, spec, out, image_compression=compression).steps
                    best = min(best, time.perf_counter() - start)
                    if out.exists():
                        os.remove(out)
                print(f"{storage:8} {what:28} {frames:6d} {best:7.2f} {frames / best:9.1f} {size / best:8.1f}")


if __name__ == "__main__":
    main()
