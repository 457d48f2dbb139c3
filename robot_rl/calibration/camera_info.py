"""camera_info YAML in the format of ROS's camera_calibration_parsers (read, write, build from a calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from robot_rl.calibration.errors import CalibrationError, read_yaml

DISTORTION_MODELS = {"plumb_bob": (5,), "rational_polynomial": (8,), "equidistant": (4,)}


@dataclass
class CameraInfo:
    """A monocular camera's calibration, as in sensor_msgs/CameraInfo.

    K: 3x3 camera matrix; D: distortion coefficients; R: 3x3 rectification; P: 3x4 projection.
    """

    width: int
    height: int
    camera_name: str
    K: np.ndarray
    D: np.ndarray
    distortion_model: str = "plumb_bob"
    R: np.ndarray | None = None
    P: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, float).reshape(3, 3)
        self.D = np.asarray(self.D, float).ravel()
        self.R = np.eye(3) if self.R is None else np.asarray(self.R, float).reshape(3, 3)
        self.P = np.column_stack([self.K, np.zeros(3)]) if self.P is None else np.asarray(self.P, float).reshape(3, 4)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping, keys in camera_calibration_parsers' order."""
        assert self.R is not None and self.P is not None

        def mat(a: np.ndarray, rows: int, cols: int) -> dict[str, Any]:
            return {"rows": rows, "cols": cols, "data": [float(v) for v in np.asarray(a).ravel()]}

        return {
            "image_width": int(self.width),
            "image_height": int(self.height),
            "camera_name": self.camera_name,
            "camera_matrix": mat(self.K, 3, 3),
            "distortion_model": self.distortion_model,
            "distortion_coefficients": mat(self.D, 1, len(self.D)),
            "rectification_matrix": mat(self.R, 3, 3),
            "projection_matrix": mat(self.P, 3, 4),
        }


def camera_info_from_calibration(camera_matrix: np.ndarray, dist_coeffs: np.ndarray, image_size: tuple[int, int],
                                 camera_name: str = "camera", alpha: float = 0.0) -> CameraInfo:
    """A CameraInfo whose P is the rectified camera matrix as ROS's mono calibrator makes it
    (cv2.getOptimalNewCameraMatrix with ``alpha``, 0 = only valid pixels)."""
    d = np.asarray(dist_coeffs, float).ravel()
    model = "rational_polynomial" if len(d) >= 8 else "plumb_bob"
    d = d[:8] if len(d) >= 8 else np.pad(d, (0, max(0, 5 - len(d))))[:5]
    new_k, _ = cv2.getOptimalNewCameraMatrix(np.asarray(camera_matrix, float), d, image_size, alpha, image_size)
    return CameraInfo(image_size[0], image_size[1], camera_name, camera_matrix, d, model, np.eye(3),
                      np.column_stack([new_k, np.zeros(3)]))


def write_camera_info(path: str | Path, info: CameraInfo) -> Path:
    """Write camera_info YAML (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(info.to_dict(), sort_keys=False, default_flow_style=None, width=200))
    return path


def read_camera_info(path: str | Path) -> CameraInfo:
    """Read camera_info YAML; a malformed file raises CalibrationError naming the file and the key."""
    path = Path(path)
    data = read_yaml(path, "camera_info")
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a camera_info mapping (image_width, camera_matrix, ...)")
    width = _int(path, data, "image_width")
    height = _int(path, data, "image_height")
    name = data.get("camera_name", "camera")
    k = _matrix(path, data, "camera_matrix", 3, 3)
    model = data.get("distortion_model", "plumb_bob")
    if model not in DISTORTION_MODELS:
        raise CalibrationError(f"{path}: key 'distortion_model' is '{model}', expected one of "
                               f"{', '.join(DISTORTION_MODELS)}")
    d = _matrix(path, data, "distortion_coefficients", 1, None)
    r = _matrix(path, data, "rectification_matrix", 3, 3) if "rectification_matrix" in data else None
    p = _matrix(path, data, "projection_matrix", 3, 4) if "projection_matrix" in data else None
    if k[2, 2] == 0 or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CalibrationError(f"{path}: key 'camera_matrix' is not a camera matrix (fx, fy > 0, last entry 1)")
    return CameraInfo(width, height, str(name), k, d.ravel(), str(model), r, p)


def _int(path: Path, data: dict[str, Any], key: str) -> int:
    if key not in data:
        raise CalibrationError(f"{path}: missing key '{key}'")
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise CalibrationError(f"{path}: key '{key}' must be a positive integer, got {value!r}")
    return value


def _matrix(path: Path, data: dict[str, Any], key: str, rows: int, cols: int | None) -> np.ndarray:
    if key not in data:
        raise CalibrationError(f"{path}: missing key '{key}'")
    m = data[key]
    if not isinstance(m, dict) or "data" not in m:
        raise CalibrationError(f"{path}: key '{key}' must be a mapping with rows, cols, data")
    values = m["data"]
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                               for v in values):
        raise CalibrationError(f"{path}: key '{key}.data' must be a list of numbers")
    r, c = m.get("rows", rows), m.get("cols", cols if cols is not None else len(values))
    if r != rows or (cols is not None and c != cols):
        raise CalibrationError(f"{path}: key '{key}' is {r}x{c}, expected {rows}x{cols if cols else 'N'}")
    if not isinstance(c, int) or len(values) != r * c:
        raise CalibrationError(f"{path}: key '{key}.data' has {len(values)} values, expected {r}x{c}")
    return np.asarray(values, float).reshape(r, c)
