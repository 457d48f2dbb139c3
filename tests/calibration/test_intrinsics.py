"""Intrinsics recovered from synthetic board images rendered with known K, distortion and poses."""

import argparse

import cv2
import numpy as np
import pytest

from robot_rl.calibration import CalibrationError, calibrate_intrinsics, parse_board, read_camera_info
from robot_rl.calibration.synthetic import BoardRenderer, random_rotation
from robot_rl.cli import calibrate_cmd

K = np.array([[610.0, 0, 325.0], [0, 600.0, 236.0], [0, 0, 1]])
D = np.array([-0.15, 0.05, 0.001, -0.0005, 0.0])
SIZE = (640, 480)


def render_views(spec: str, n: int, seed: int = 1) -> list[np.ndarray]:
    board = parse_board(spec)
    renderer = BoardRenderer(board, K, D, SIZE)
    rng = np.random.default_rng(seed)
    centre = renderer.board_center()
    images = []
    for _ in range(n):
        rot = random_rotation(rng, 35)
        pos = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), rng.uniform(0.38, 0.55)])
        rvec, _ = cv2.Rodrigues(rot)
        images.append(renderer.render(rvec, pos - rot @ centre, noise=2.0, rng=rng))
    return images


@pytest.mark.parametrize("spec", ["chessboard:9x6:0.025", "charuco:7x5:0.035:0.026:DICT_4X4_50"])
def test_recovers_known_intrinsics(spec, tmp_path):
    png = tmp_path / "corners.png"
    result = calibrate_intrinsics(render_views(spec, 10), parse_board(spec), png=png)
    assert result.image_size == SIZE and not result.rejected
    assert abs(result.fx / K[0, 0] - 1) < 0.01 and abs(result.fy / K[1, 1] - 1) < 0.01
    assert abs(result.cx - K[0, 2]) < 0.01 * SIZE[0] and abs(result.cy - K[1, 2]) < 0.01 * SIZE[1]
    assert abs(result.dist_coeffs[0] - D[0]) < 0.02
    assert abs(result.dist_coeffs[1] - D[1]) < 0.05
    assert result.rms < 0.5 and len(result.per_image_error) == 10
    assert max(result.per_image_error.values()) < 1.0
    assert png.stat().st_size > 10_000 and cv2.imread(str(png)).shape[1] >= 4 * 320


def test_cli_writes_camera_info_and_reports_missing_boards(tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    for i, img in enumerate(render_views("chessboard:9x6:0.025", 6, seed=3)):
        cv2.imwrite(str(images / f"view_{i:02d}.png"), img)
    cv2.imwrite(str(images / "blank.png"), np.full((480, 640), 128, np.uint8))
    parser = argparse.ArgumentParser()
    calibrate_cmd.add_parser(parser.add_subparsers(dest="command"), "calibrate")
    out = tmp_path / "robot" / "cam.yaml"
    args = parser.parse_args(["calibrate", "intrinsics", "--images", str(images), "--board", "chessboard:9x6:0.025",
                              "--out", str(out), "--camera-name", "wrist"])
    assert calibrate_cmd.run(args) == 0
    info = read_camera_info(out)
    assert info.camera_name == "wrist" and info.image_size == SIZE
    assert abs(info.K[0, 0] / K[0, 0] - 1) < 0.01
    text = capsys.readouterr().out
    assert "reprojection error" in text and "board not found in 1 of 7 images: blank.png" in text

    args = parser.parse_args(["calibrate", "intrinsics", "--images", str(images), "--board", "chessboard:9x6:0.025",
                              "--out", str(out), "--min-images", "8"])
    with pytest.raises(CalibrationError) as err:
        calibrate_cmd.run(args)
    msg = str(err.value)
    assert "\n" not in msg and "not found in 1 of 7 images: blank.png" in msg and "need at least 8" in msg


def test_bad_inputs_give_one_line_errors(tmp_path):
    for spec in ["chessboard:9x6", "chessbord:9x6:0.02", "charuco:5x7:0.04:0.05", "charuco:5x7:0.04:0.03:DICT_NOPE"]:
        with pytest.raises(CalibrationError) as err:
            parse_board(spec)
        assert "\n" not in str(err.value)
    with pytest.raises(CalibrationError, match="no images"):
        calibrate_intrinsics([], parse_board("chessboard:9x6:0.025"))
    blanks = [np.full((120, 160), 128, np.uint8)] * 7
    with pytest.raises(CalibrationError, match=r"not found in 7 of 7 images: image_000, image_001, .* \.\.\."):
        calibrate_intrinsics(blanks, parse_board("chessboard:9x6:0.025"))
    mixed = [np.zeros((120, 160), np.uint8), np.zeros((100, 160), np.uint8)]
    with pytest.raises(CalibrationError, match="differ in size"):
        calibrate_intrinsics(mixed, parse_board("chessboard:9x6:0.025"))
    empty = tmp_path / "empty"
    empty.mkdir()
    parser = argparse.ArgumentParser()
    calibrate_cmd.add_parser(parser.add_subparsers(dest="command"), "calibrate")
    args = parser.parse_args(["calibrate", "intrinsics", "--images", str(empty), "--board", "chessboard:9x6:0.025",
                              "--out", str(tmp_path / "c.yaml")])
    with pytest.raises(CalibrationError, match=f"{empty}: no images"):
        calibrate_cmd.run(args)
