"""Hand-eye calibration (AX = XB) for a camera on the gripper (eye-in-hand) or fixed in the world (eye-to-hand).

Both modes use cv2.calibrateHandEye, so every method (TSAI, PARK, HORAUD, ANDREFF, DANIILIDIS) works for both:

- eye-in-hand: inputs gripper->base and target->camera poses; output X = camera->gripper.
  The target is fixed in the base frame, so ``gripper2base @ X @ target2cam`` is constant.
- eye-to-hand: the *inverted-poses* formulation. The target rides on the gripper and the camera is fixed;
  passing base->gripper (the inverses of the gripper->base poses) in place of gripper->base makes
  cv2.calibrateHandEye return X = camera->base. ``inv(gripper2base) @ X @ target2cam`` (target->gripper) is
  constant.

The consistency residual is the spread of that constant transform across samples: the RMS and maximum
translation deviation (mm) and rotation deviation (deg) from its mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from robot_rl.calibration.boards import BoardSpec, detect
from robot_rl.calibration.errors import CalibrationError, read_yaml

METHODS: dict[str, int] = {
    "TSAI": cv2.CALIB_HAND_EYE_TSAI,
    "PARK": cv2.CALIB_HAND_EYE_PARK,
    "HORAUD": cv2.CALIB_HAND_EYE_HORAUD,
    "ANDREFF": cv2.CALIB_HAND_EYE_ANDREFF,
    "DANIILIDIS": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
MODES = ("eye-in-hand", "eye-to-hand")
MIN_SAMPLES = 3


@dataclass
class Residual:
    """Spread of the implied constant transform (target in base, or target in gripper) across samples."""

    translation_mm_rms: float
    translation_mm_max: float
    rotation_deg_rms: float
    rotation_deg_max: float
    per_sample_mm: list[float]
    per_sample_deg: list[float]


@dataclass
class HandEyeResult:
    """The camera's pose: camera->gripper (eye-in-hand) or camera->base (eye-to-hand), as a 4x4 transform.

    ``target`` is the mean implied target pose: target->base (eye-in-hand) or target->gripper (eye-to-hand).
    """

    mode: str
    method: str
    transform: np.ndarray
    target: np.ndarray
    residual: Residual
    num_samples: int
    rotation_spread_deg: float = float("nan")
    motion_condition: float = float("nan")

    @property
    def parent_frame(self) -> str:
        return "gripper" if self.mode == "eye-in-hand" else "base"

    def to_dict(self) -> dict[str, Any]:
        """A YAML-ready mapping: the transform (metres), translation and quaternion (x, y, z, w), residual."""
        r = self.residual
        return {
            "mode": self.mode,
            "method": self.method,
            "parent_frame": self.parent_frame,
            "child_frame": "camera",
            "transform": [[float(v) for v in row] for row in self.transform],
            "translation": [float(v) for v in self.transform[:3, 3]],
            "quaternion_xyzw": [float(v) for v in rotation_to_quaternion(self.transform[:3, :3])],
            "num_samples": self.num_samples,
            "residual": {"translation_mm_rms": r.translation_mm_rms, "translation_mm_max": r.translation_mm_max,
                         "rotation_deg_rms": r.rotation_deg_rms, "rotation_deg_max": r.rotation_deg_max},
            "motion": {"rotation_spread_deg": self.rotation_spread_deg, "condition": self.motion_condition},
        }


def invert(t: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return out


def rotation_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation matrix, w >= 0."""
    rvec, _ = cv2.Rodrigues(np.asarray(rot, float))
    angle = float(np.linalg.norm(rvec))
    axis = rvec.ravel() / angle if angle > 1e-12 else np.array([1.0, 0.0, 0.0])
    q = np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])
    return q if q[3] >= 0 else -q


def quaternion_to_rotation(q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w); it need not be normalised."""
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def mean_transform(transforms: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of rigid transforms: arithmetic mean translation, chordal L2 mean rotation (SVD projection)."""
    rots = np.mean([t[:3, :3] for t in transforms], axis=0)
    u, _, vt = np.linalg.svd(rots)
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.mean([t[:3, 3] for t in transforms], axis=0)
    return out


def spread(transforms: Sequence[np.ndarray]) -> tuple[np.ndarray, Residual]:
    """The mean of transforms that should all be equal, and how far they deviate from it."""
    mean = mean_transform(transforms)
    mm = [float(np.linalg.norm(t[:3, 3] - mean[:3, 3]) * 1000) for t in transforms]
    deg = []
    for t in transforms:
        rvec, _ = cv2.Rodrigues(mean[:3, :3].T @ t[:3, :3])
        deg.append(float(np.rad2deg(np.linalg.norm(rvec))))
    res = Residual(float(np.sqrt(np.mean(np.square(mm)))), max(mm), float(np.sqrt(np.mean(np.square(deg)))),
                   max(deg), mm, deg)
    return mean, res


def motion_diversity(robot_poses: Sequence[np.ndarray]) -> tuple[float, float]:
    """The rotation spread (largest rotation in degrees between any two poses) and the motion condition.

    The condition is s1 / s2 of the relative rotation vectors (axis x angle, radians) over all pose pairs:
    about 1-3 for rotations about varied axes, infinite for rotation about one axis or none.
    """
    rvecs = []
    for i, a in enumerate(robot_poses):
        for b in robot_poses[i + 1:]:
            rvec, _ = cv2.Rodrigues(invert(a)[:3, :3] @ b[:3, :3])
            rvecs.append(rvec.ravel())
    if not rvecs:
        return 0.0, float("inf")
    stack = np.array(rvecs)
    spread = float(np.rad2deg(np.linalg.norm(stack, axis=1).max()))
    s = np.linalg.svd(stack, compute_uv=False)
    second = s[1] if len(s) > 1 else 0.0
    condition = float(s[0] / second) if second > 1e-9 * max(s[0], 1e-12) else float("inf")
    return spread, condition


def _check_poses(name: str, poses: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, p in enumerate(poses):
        a = np.asarray(p, float)
        if a.shape != (4, 4):
            raise CalibrationError(f"{name} pose {i} has shape {a.shape}, expected 4x4")
        if not np.allclose(a[:3, :3] @ a[:3, :3].T, np.eye(3), atol=1e-3) or np.linalg.det(a[:3, :3]) < 0:
            raise CalibrationError(f"{name} pose {i} has a rotation part that is not a rotation matrix")
        out.append(a)
    return out


def calibrate_hand_eye(gripper2base: Sequence[np.ndarray], target2cam: Sequence[np.ndarray],
                       mode: str = "eye-in-hand", method: str = "TSAI") -> HandEyeResult:
    """Solve AX = XB; see the module docstring for the frames of each mode.

    ``gripper2base``: the robot's gripper poses in the base frame (4x4, metres), from forward kinematics.
    ``target2cam``: the board's poses in the camera frame (4x4, metres), e.g. from solvePnP.
    """
    method = method.upper()
    if method not in METHODS:
        raise CalibrationError(f"unknown hand-eye method '{method}', expected one of {', '.join(METHODS)}")
    if mode not in MODES:
        raise CalibrationError(f"unknown hand-eye mode '{mode}', expected one of {', '.join(MODES)}")
    g2b = _check_poses("gripper-to-base", gripper2base)
    t2c = _check_poses("target-to-camera", target2cam)
    if len(g2b) != len(t2c):
        raise CalibrationError(f"{len(g2b)} gripper poses but {len(t2c)} target poses; they must pair up")
    if len(g2b) < MIN_SAMPLES:
        raise CalibrationError(f"only {len(g2b)} pose pairs, need at least {MIN_SAMPLES} (10+ recommended, "
                               "with rotations about different axes)")
    robot = g2b if mode == "eye-in-hand" else [invert(p) for p in g2b]
    # OpenCV logs "Hand-eye calibration failed!" for uninformative motions and returns the identity; the
    # quality gates (calibration/quality.py) judge that from the motion numbers instead of a stderr line.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        rot, trans = cv2.calibrateHandEye([p[:3, :3] for p in robot], [p[:3, 3] for p in robot],
                                          [p[:3, :3] for p in t2c], [p[:3, 3] for p in t2c], method=METHODS[method])
    finally:
        cv2.utils.logging.setLogLevel(level)
    x = np.eye(4)
    x[:3, :3] = rot
    x[:3, 3] = np.asarray(trans).ravel()
    if not np.all(np.isfinite(x)):
        raise CalibrationError(f"hand-eye method {method} failed (degenerate motions? rotate about several axes)")
    target, residual = spread([r @ x @ t for r, t in zip(robot, t2c, strict=True)])
    return HandEyeResult(mode, method, x, target, residual, len(g2b), *motion_diversity(robot))


def target_pose(image: np.ndarray, board: BoardSpec, camera_matrix: np.ndarray,
                dist_coeffs: np.ndarray) -> np.ndarray | None:
    """The board's pose in the camera frame (4x4) from one image via solvePnP; None if the board is not found."""
    det = detect(image, board)
    if det is None:
        return None
    ok, rvec, tvec = cv2.solvePnP(det.object_points, det.image_points, camera_matrix, dist_coeffs,
                                  flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(det.object_points, det.image_points, camera_matrix, dist_coeffs, rvec, tvec)
    rot, _ = cv2.Rodrigues(rvec)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = tvec.ravel()
    return out


@dataclass
class PoseSample:
    """One entry of a poses file: the image name, gripper->base, and optionally a given target->camera."""

    image: str | None
    gripper2base: np.ndarray
    target2cam: np.ndarray | None


def read_poses(path: str | Path) -> list[PoseSample]:
    """Read a poses YAML file.

    Format: ``poses:`` a list of entries, each with ``image`` (file name in the images folder) and the gripper
    pose as ``gripper_to_base`` (4x4 nested list, metres) or ``translation`` [x, y, z] plus ``quaternion``
    [x, y, z, w]; an entry may give ``target_to_camera`` (4x4) instead of an image.
    """
    path = Path(path)
    data = read_yaml(path, "poses")
    entries = data.get("poses") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CalibrationError(f"{path}: missing key 'poses' (a list of entries)")
    samples = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CalibrationError(f"{path}: key 'poses[{i}]' must be a mapping")
        if "gripper_to_base" in entry:
            g2b = _matrix4(path, f"poses[{i}].gripper_to_base", entry["gripper_to_base"])
        elif "translation" in entry and "quaternion" in entry:
            t, q = np.asarray(entry["translation"], float), np.asarray(entry["quaternion"], float)
            if t.shape != (3,) or q.shape != (4,) or not np.linalg.norm(q) > 0:
                raise CalibrationError(f"{path}: key 'poses[{i}]' needs translation [x, y, z] and a non-zero "
                                       "quaternion [x, y, z, w]")
            g2b = np.eye(4)
            g2b[:3, :3] = quaternion_to_rotation(q)
            g2b[:3, 3] = t
        else:
            raise CalibrationError(f"{path}: key 'poses[{i}]' needs gripper_to_base or translation + quaternion")
        t2c = _matrix4(path, f"poses[{i}].target_to_camera", entry["target_to_camera"]) \
            if "target_to_camera" in entry else None
        image = entry.get("image")
        if image is None and t2c is None:
            raise CalibrationError(f"{path}: key 'poses[{i}]' needs image or target_to_camera")
        samples.append(PoseSample(None if image is None else str(image), g2b, t2c))
    return samples


def _matrix4(path: Path, key: str, value: Any) -> np.ndarray:
    try:
        a = np.asarray(value, float)
    except (TypeError, ValueError):
        a = np.zeros(0)
    if a.shape != (4, 4):
        raise CalibrationError(f"{path}: key '{key}' must be a 4x4 list of numbers")
    return a


def write_extrinsics(path: str | Path, result: HandEyeResult) -> Path:
    """Write a hand-eye result as YAML (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(result.to_dict(), sort_keys=False, default_flow_style=None, width=200))
    return path
