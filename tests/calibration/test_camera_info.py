"""camera_info YAML: ROS key layout, round trip, one-line errors naming file and key."""

import numpy as np
import pytest
import yaml

from robot_rl.calibration import CalibrationError, CameraInfo, read_camera_info, write_camera_info
from robot_rl.calibration.camera_info import camera_info_from_calibration

ROS_KEYS = ["image_width", "image_height", "camera_name", "camera_matrix", "distortion_model",
            "distortion_coefficients", "rectification_matrix", "projection_matrix"]


def test_round_trip_with_ros_keys(tmp_path):
    k = np.array([[610.5, 0, 321.25], [0, 600.125, 239.5], [0, 0, 1]])
    info = camera_info_from_calibration(k, [-0.15, 0.05, 0.001, -0.0005, 0.0], (640, 480), "wrist_cam")
    path = write_camera_info(tmp_path / "a" / "cam.yaml", info)
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == ROS_KEYS
    assert raw["camera_matrix"] == {"rows": 3, "cols": 3, "data": [610.5, 0.0, 321.25, 0.0, 600.125, 239.5, 0, 0, 1]}
    assert raw["distortion_model"] == "plumb_bob" and raw["distortion_coefficients"]["cols"] == 5
    assert raw["projection_matrix"]["rows"] == 3 and raw["projection_matrix"]["cols"] == 4
    back = read_camera_info(path)
    assert (back.width, back.height, back.camera_name) == (640, 480, "wrist_cam")
    np.testing.assert_array_equal(back.K, info.K)
    np.testing.assert_array_equal(back.D, info.D)
    np.testing.assert_array_equal(back.R, np.eye(3))
    np.testing.assert_array_equal(back.P, info.P)
    assert back.P is not None and back.P[0, 0] > 0 and back.P[2, 2] == 1


def test_reads_ros_written_file(tmp_path):
    path = tmp_path / "ros.yaml"
    path.write_text("""image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [430.2, 0, 306.6, 0, 430.2, 238.1, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.33, 0.11, 0.0, 0.0, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [430.2, 0, 306.6, 0, 0, 430.2, 238.1, 0, 0, 0, 1, 0]
""")
    info = read_camera_info(path)
    assert info.K[0, 2] == pytest.approx(306.6) and info.D[0] == pytest.approx(-0.33)
    assert isinstance(info, CameraInfo) and info.P is not None and info.P.shape == (3, 4)


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("image_width"), "image_width"),
    (lambda d: d.update(image_height="tall"), "image_height"),
    (lambda d: d["camera_matrix"]["data"].pop(), "camera_matrix.data"),
    (lambda d: d.update(camera_matrix=[1, 2, 3]), "camera_matrix"),
    (lambda d: d["projection_matrix"].update(cols=3), "projection_matrix"),
    (lambda d: d["distortion_coefficients"]["data"].__setitem__(0, "x"), "distortion_coefficients.data"),
    (lambda d: d.update(distortion_model="fisheye9"), "distortion_model"),
])
def test_malformed_files_name_file_and_key(tmp_path, edit, key):
    info = camera_info_from_calibration(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), np.zeros(5),
                                        (640, 480))
    data = info.to_dict()
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationError) as err:
        read_camera_info(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"'{key}'" in msg


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        read_camera_info(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera_matrix: [1, 2\n")
    with pytest.raises(CalibrationError, match="not valid YAML") as err:
        read_camera_info(bad)
    assert "\n" not in str(err.value)
