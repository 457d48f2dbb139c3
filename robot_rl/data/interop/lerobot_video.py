"""Decoding LeRobot's camera videos with PyAV: each episode's frames, at the dataset's fps, from the episode's own
file (v2.1) or its span of a file that holds several episodes back to back (v3.0, ``from_timestamp``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.interop.common import InteropError
from robot_rl.data.layout import one_line


def resize(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or rgb.shape[:2] == tuple(size):
        return np.ascontiguousarray(rgb)
    import cv2

    return np.asarray(cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA))


class Videos:
    """Decodes each episode's frames from LeRobot's MP4 files with PyAV, one open container per file."""

    def __init__(self, root: Path, info: dict[str, Any], version: str, fps: float,
                 image_size: tuple[int, int] | None) -> None:
        self.root, self.info, self.version, self.fps, self.size = root, info, version, fps, image_size
        self._open: dict[Path, Any] = {}
        self.frames = 0

    def _path(self, key: str, ep: dict[str, Any]) -> tuple[Path, float]:
        template = self.info.get("video_path")
        if not template:
            raise InteropError(f"{self.root}/meta/info.json: video feature '{key}' but no video_path")
        index = int(ep["episode_index"])
        if self.version == "v2.1":
            chunk = index // int(self.info.get("chunks_size") or 1000)
            return self.root / template.format(episode_chunk=chunk, video_key=key, episode_index=index), 0.0
        try:
            rel = template.format(video_key=key, chunk_index=int(ep[f"videos/{key}/chunk_index"]),
                                  file_index=int(ep[f"videos/{key}/file_index"]))
            start = float(ep[f"videos/{key}/from_timestamp"])
        except KeyError as e:
            raise InteropError(f"{self.root}: episode {index}: meta/episodes lacks {e.args[0]}") from None
        return self.root / rel, start

    def episode(self, key: str, ep: dict[str, Any], length: int) -> np.ndarray:
        """uint8 ``[length, H, W, 3]``: frame j is the video frame at ``from_timestamp + j / fps``."""
        path, start = self._path(key, ep)
        try:
            import av
        except ImportError:
            raise InteropError(f"{path}: decoding LeRobot videos needs PyAV: pip install 'robot_rl[interop]'") \
                from None
        if not path.is_file():
            raise InteropError(f"{path}: no such video file (episode {ep['episode_index']}, {key})")
        try:
            container = self._open.get(path) or av.open(str(path))
            self._open[path] = container
            stream = container.streams.video[0]
            base = stream.time_base
            if base:
                container.seek(max(0, int(start / float(base))), stream=stream, backward=True)
            wanted = start + np.arange(length) / self.fps
            tol = 0.5 / self.fps
            out: list[np.ndarray | None] = [None] * length
            j = 0
            for frame in container.decode(stream):
                ts = float(frame.time if frame.time is not None else 0.0)
                if ts < wanted[0] - tol:
                    continue
                while j < length and wanted[j] < ts - tol:
                    j += 1  # a frame the video lacks: filled from the previous one below
                if j >= length:
                    break
                if abs(ts - wanted[j]) <= tol:
                    out[j] = resize(frame.to_ndarray(format="rgb24"), self.size)
                    self.frames += 1
                    j += 1
                if j >= length:
                    break
        except InteropError:
            raise
        except Exception as e:  # PyAV raises its own error types for damaged files
            raise InteropError(f"{path}: cannot decode ({one_line(e)})") from None
        missing = [i for i, f in enumerate(out) if f is None]
        if missing:
            raise InteropError(f"{path}: episode {ep['episode_index']}: no video frame at "
                               f"{wanted[missing[0]]:.3f} s ({len(missing)} of {length} frames missing)")
        return np.stack([f for f in out if f is not None])

    def close(self) -> None:
        for c in self._open.values():
            c.close()
        self._open.clear()


VIDEO_CODECS = (("libsvtav1", "av1", {"g": "2", "crf": "30"}), ("libx264", "h264", {"g": "2", "crf": "23"}))
"""Encoders in order of preference: LeRobot's default (SVT-AV1, keyframe every 2 frames, crf 30), else H.264."""


def video_codec() -> tuple[str, str, dict[str, str]] | None:
    """(encoder, codec name for info.json, options) of the first encoder PyAV has here, or None."""
    try:
        import av
    except ImportError:
        return None
    for encoder, name, options in VIDEO_CODECS:
        try:
            av.codec.Codec(encoder, "w")
        except Exception:  # av raises UnknownCodecError (a ValueError) for encoders its FFmpeg lacks
            continue
        return encoder, name, options
    return None


class VideoWriter:
    """Appends episodes' frames to one MP4 per camera, back to back, as LeRobot v3.0 stores them: frame k of the
    file is shown at k / fps, so an episode is the span ``[from_timestamp, to_timestamp)``."""

    def __init__(self, path: Path, fps: int, codec: tuple[str, str, dict[str, str]]) -> None:
        self.path, self.fps, self.codec = path, fps, codec
        self._out: Any = None
        self._stream: Any = None
        self.frames = 0
        self.shape: tuple[int, int] = (0, 0)

    def add(self, frames: np.ndarray) -> tuple[float, float]:
        """Encode uint8 ``[T, H, W, 3]`` frames; returns the episode's (from_timestamp, to_timestamp)."""
        import av

        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = av.open(str(self.path), "w")
            self._stream = self._out.add_stream(self.codec[0], self.fps, options=self.codec[2])
            self._stream.pix_fmt = "yuv420p"
            self.shape = (int(frames.shape[1]), int(frames.shape[2]))
            self._stream.height, self._stream.width = self.shape
        start = self.frames
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = self.frames
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
            self.frames += 1
        return start / self.fps, self.frames / self.fps

    def close(self) -> None:
        if self._out is not None:
            for packet in self._stream.encode():
                self._out.mux(packet)
            self._out.close()
            self._out = None
