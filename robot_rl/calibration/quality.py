"""Quality gates on calibration results: a result that fails one is refused with its numbers, not written.

A calibration solver always returns *something*: cv2.calibrateHandEye returns the identity when the robot's
motions carry no information (it prints "Hand-eye calibration failed!" and carries on), and cv2.calibrateCamera
happily fits a camera matrix with fy/fx = 1.57 to bad corners. These gates judge the result instead.

The thresholds are module constants (named, with their reason); the CLI refuses a failing result unless
``--accept-poor`` is given, in which case it writes it with a warning naming each failed gate.
"""

from __future__ import annotations

import numpy as np

from robot_rl.calibration.errors import CalibrationError
from robot_rl.calibration.hand_eye import HandEyeResult
from robot_rl.calibration.intrinsics import IntrinsicsResult

MAX_HAND_EYE_RESIDUAL_MM = 10.0
"""Largest acceptable RMS spread (mm) of the implied constant target pose across samples. A good setup gives
1-3 mm; above 10 mm the poses do not pair up (wrong order, wrong mode, stale robot poses) or the board poses
are poor."""

MAX_HAND_EYE_RESIDUAL_DEG = 1.0
"""Largest acceptable RMS spread (degrees) of the implied target orientation; a good setup gives 0.1-0.3 deg."""

MIN_ROTATION_SPREAD_DEG = 10.0
"""Smallest acceptable largest rotation (degrees) between any two gripper poses. AX = XB is solved from the
relative rotations; below a few degrees their axes are noise and the solution is meaningless (identical poses
give no information at all and OpenCV returns the identity)."""

MAX_MOTION_CONDITION = 20.0
"""Largest acceptable ratio of the first to the second singular value of the stacked relative rotation vectors
(axis x angle) between gripper poses. The rotation part of X is determined only when the motions rotate about
at least two different axes; rotation about one axis only gives an infinite ratio."""

MAX_INTRINSICS_RMS_PX = 1.0
"""Largest acceptable RMS reprojection error (pixels) of an intrinsic calibration; a sharp board gives
0.1-0.5 px. Above 1 px the corners are wrong (blur, a warped board, a wrong board size) or images from
different cameras or zoom settings are mixed."""

ASPECT_RANGE = (0.8, 1.25)
"""Plausible range of fy/fx. Camera pixels are square to within a few percent; a value outside this range
(e.g. 1.57) means the fit is degenerate (too few tilted views) or the images were resized non-uniformly."""


class CalibrationQualityError(CalibrationError):
    """A calibration result failed a quality gate; its one-line message gives the numbers and each failure."""


def hand_eye_problems(result: HandEyeResult) -> list[str]:
    """Each failed gate of a hand-eye result as a short phrase with its number and limit; empty when it passes."""
    r = result.residual
    problems = []
    if result.rotation_spread_deg < MIN_ROTATION_SPREAD_DEG:
        problems.append(f"gripper rotation spread {result.rotation_spread_deg:.2f} deg < {MIN_ROTATION_SPREAD_DEG:g}")
    if not result.motion_condition <= MAX_MOTION_CONDITION:
        problems.append(f"motion condition {result.motion_condition:.3g} > {MAX_MOTION_CONDITION:g} "
                        "(rotations about fewer than two axes)")
    if not r.translation_mm_rms <= MAX_HAND_EYE_RESIDUAL_MM:
        problems.append(f"residual {r.translation_mm_rms:.2f} mm RMS > {MAX_HAND_EYE_RESIDUAL_MM:g}")
    if not r.rotation_deg_rms <= MAX_HAND_EYE_RESIDUAL_DEG:
        problems.append(f"residual {r.rotation_deg_rms:.3f} deg RMS > {MAX_HAND_EYE_RESIDUAL_DEG:g}")
    if np.allclose(result.transform, np.eye(4)):
        problems.append("solver returned the identity")
    return problems


def intrinsics_problems(result: IntrinsicsResult) -> list[str]:
    """Each failed gate of an intrinsic calibration with its number and limit; empty when it passes."""
    problems = []
    if not np.all(np.isfinite(result.camera_matrix)) or not np.all(np.isfinite(result.dist_coeffs)):
        return ["camera matrix or distortion is not finite"]
    if not result.rms <= MAX_INTRINSICS_RMS_PX:
        problems.append(f"reprojection error {result.rms:.3f} px RMS > {MAX_INTRINSICS_RMS_PX:g}")
    aspect = result.fy / result.fx if result.fx > 0 else float("inf")
    if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        problems.append(f"fy/fx {aspect:.3f} outside {ASPECT_RANGE[0]:g}-{ASPECT_RANGE[1]:g} "
                        f"(fx {result.fx:.1f}, fy {result.fy:.1f})")
    w, h = result.image_size
    if not (0 < result.cx < w and 0 < result.cy < h):
        problems.append(f"principal point ({result.cx:.1f}, {result.cy:.1f}) outside the {w}x{h} image")
    return problems


def check_hand_eye(result: HandEyeResult) -> None:
    """Raise ``CalibrationQualityError`` naming every failed gate (with the numbers) of a hand-eye result."""
    problems = hand_eye_problems(result)
    if problems:
        raise CalibrationQualityError(
            f"hand-eye result refused ({result.num_samples} samples, method {result.method}): "
            + "; ".join(problems) + "; rotate the gripper by 20+ deg about at least two axes between poses "
            "and check the poses pair up with the images, or pass --accept-poor to write it anyway")


def check_intrinsics(result: IntrinsicsResult) -> None:
    """Raise ``CalibrationQualityError`` naming every failed gate (with the numbers) of an intrinsic result."""
    problems = intrinsics_problems(result)
    if problems:
        worst = max(result.per_image_error.items(), key=lambda kv: kv[1]) if result.per_image_error else None
        raise CalibrationQualityError(
            f"intrinsics refused ({len(result.per_image_error)} images): " + "; ".join(problems)
            + (f"; worst image {worst[0]} at {worst[1]:.2f} px" if worst else "")
            + "; retake sharp, tilted views of a flat board of the stated size, or pass --accept-poor to write "
            "it anyway")
