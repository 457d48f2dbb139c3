"""Camera intrinsics, hand-eye calibration and camera_info YAML I/O (OpenCV 4.7+, pinned <5)."""

from robot_rl.calibration.boards import BoardSpec, Detection, detect, load_board, parse_board
from robot_rl.calibration.camera_info import (
                                              CameraInfo,
                                              camera_info_from_calibration,
                                              read_camera_info,
                                              write_camera_info,
)
from robot_rl.calibration.errors import CalibrationError
from robot_rl.calibration.hand_eye import (
                                              METHODS,
                                              MODES,
                                              HandEyeResult,
                                              PoseSample,
                                              Residual,
                                              calibrate_hand_eye,
                                              read_poses,
                                              target_pose,
                                              write_extrinsics,
)
from robot_rl.calibration.intrinsics import IntrinsicsResult, calibrate_intrinsics, list_images, write_corners_png
from robot_rl.calibration.quality import CalibrationQualityError, check_hand_eye, check_intrinsics

__all__ = [
    "METHODS", "MODES", "BoardSpec", "CalibrationError", "CalibrationQualityError", "CameraInfo", "Detection",
    "HandEyeResult", "IntrinsicsResult", "PoseSample", "Residual", "calibrate_hand_eye", "calibrate_intrinsics",
    "camera_info_from_calibration", "check_hand_eye", "check_intrinsics", "detect", "list_images", "load_board",
    "parse_board", "read_camera_info", "read_poses", "target_pose", "write_camera_info", "write_corners_png",
    "write_extrinsics",
]
