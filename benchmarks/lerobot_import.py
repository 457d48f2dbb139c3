"""Video import throughput of ``robot-rl import lerobot:...`` (LeRobot v3.0, AV1 camera video decoded with PyAV).

    python benchmarks/lerobot_import.py [--episodes 6] [--frames 50] [--repeats 2]

Writes a v3.0 dataset as LeRobot lays it out (``tests/data/lerobot_fixture.py``): ``--episodes`` episodes of
``--frames`` frames at 10 fps, one 480x640 camera (a gradient plus a moving square, so the codec has real work),
encoded as LeRobot's ``encode_video_frames`` does (libsvtav1, yuv420p, g=2, crf=30), all episodes back to back in
one file. Rows: PyAV decoding the file alone (to rgb24 arrays: the floor of any importer), and the full import
(parquet frames + per-episode seek and decode + HDF5 write) at the stored size with each image compression and
resized to 96x128. Frames/s = camera frames stored / wall seconds, best of ``--repeats``; ratio = import rate /
decode-only rate.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.data.lerobot_fixture

from robot_rl.data.interop import import_source  # noqa: E402
from tests.data.lerobot_fixture import write_v30  # noqa: E402

H, W = 480, 640
_BASE = (np.add.outer(np.arange(H), np.arange(W)) // 3 % 256).astype(np.uint8)


def frame(k: int) -> np.ndarray:
    img = np.stack([_BASE, np.roll(_BASE, k * 4, axis=1), np.full((H, W), 90, np.uint8)], axis=-1)
    y, x = (k * 7) % (H - 60), (k * 11) % (W - 60)
    img[y:y + 60, x:x + 60] = (250, 30, 30)
    return img


def decode_only(path: Path) -> int:
    import av

    n = 0
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            f.to_ndarray(format="rgb24")
            n += 1
    return n


def best(fn, repeats: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    return min(times), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "so100"
        t0 = time.perf_counter()
        write_v30(root, lengths=(args.frames,) * args.episodes, tasks=("pick",) * args.episodes, frame=frame)
        video = root / "videos/observation.images.top/chunk-000/file-000.mp4"
        print(f"wrote {args.episodes} x {args.frames} frames of {W}x{H} AV1 in {time.perf_counter() - t0:.1f} s; "
              f"video {video.stat().st_size / 1e6:.2f} MB", flush=True)
        rows = []
        serial = itertools.count()
        s, n = best(lambda: decode_only(video), args.repeats)
        floor = n / s
        rows.append(("PyAV decode only (rgb24)", n, s, floor))
        for label, options in (("import, gzip", {"image_compression": "gzip"}),
                               ("import, lzf", {"image_compression": "lzf"}),
                               ("import, no compression", {"image_compression": None}),
                               ("import 96x128, lzf", {"image_compression": "lzf", "image_size": (96, 128)})):
            sizes: list[int] = []

            def run(options: dict = options, sizes: list[int] = sizes) -> int:
                out = Path(tmp) / f"out{next(serial)}.h5"
                report = import_source(f"lerobot:{root}", str(out), **options)
                sizes.append(os.path.getsize(out))
                return report.steps

            s, n = best(run, args.repeats)
            rows.append((f"{label} ({sizes[-1] / 1e6:.1f} MB)", n, s, n / s))
        print(f"{'what':36s} {'frames':>7s} {'s':>7s} {'frames/s':>9s} {'ratio':>6s}")
        for what, n, s, rate in rows:
            print(f"{what:36s} {n:7d} {s:7.2f} {rate:9.1f} {rate / floor:6.2f}")


if __name__ == "__main__":
    main()
