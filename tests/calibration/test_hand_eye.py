"""Hand-eye calibration recovers a known camera pose in both modes with every method."""

import argparse

import cv2
import numpy as np
import pytest
import yaml

from robot_rl.calibration import METHODS, CalibrationError, calibrate_hand_eye, parse_board, read_poses
from robot_rl.calibration.camera_info import camera_info_from_calibration, write_camera_info
from robot_rl.calibration.hand_eye import invert, quaternion_to_rotation, rotation_to_quaternion
from robot_rl.calibration.synthetic import BoardRenderer, make_transform, perturb, random_rotation
from robot_rl.cli import calibrate_cmd


def errors(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    d = invert(expected) @ got
    rvec, _ = cv2.Rodrigues(d[:3, :3])
    return float(np.linalg.norm(d[:3, 3]) * 1000), float(np.rad2deg(np.linalg.norm(rvec)))


def robot_poses(rng, n=15):
    return [make_transform(random_rotation(rng, 35), [0.5 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1),
                                                      0.4 + rng.uniform(-0.05, 0.05)]) for _ in range(n)]


def eye_in_hand_data(seed=0, noise=(0.0002, 0.02)):
    rng = np.random.default_rng(seed)
    cam2gripper = make_transform(random_rotation(rng, 90), [0.03, -0.05, 0.08])
    target2base = make_transform(random_rotation(rng, 20), [0.6, 0.1, 0.0])
    g2b = robot_poses(rng)
    t2c = [perturb(invert(cam2gripper) @ invert(g) @ target2base, rng, *noise) for g in g2b]
    return g2b, t2c, cam2gripper, target2base


@pytest.mark.parametrize("method", sorted(METHODS))
def test_eye_in_hand_every_method(method):
    g2b, t2c, x, target2base = eye_in_hand_data()
    result = calibrate_hand_eye(g2b, t2c, "eye-in-hand", method)
    mm, deg = errors(x, result.transform)
    assert mm < 1.0 and deg < 0.1, (mm, deg)
    tmm, tdeg = errors(target2base, result.target)
    assert tmm < 1.0 and tdeg < 0.1
    assert result.residual.translation_mm_rms < 1.0 and result.residual.rotation_deg_rms < 0.1
    assert result.num_samples == 15 and result.parent_frame == "gripper"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_eye_to_hand_every_method(method):
    rng = np.random.default_rng(1)
    cam2base = make_transform(random_rotation(rng, 90), [1.0, 0.2, 0.8])
    target2gripper = make_transform(random_rotation(rng, 20), [0.0, 0.02, 0.1])
    g2b = robot_poses(rng)
    t2c = [perturb(invert(cam2base) @ g @ target2gripper, rng, 0.0002, 0.02) for g in g2b]
    result = calibrate_hand_eye(g2b, t2c, "eye-to-hand", method)
    mm, deg = errors(cam2base, result.transform)
    assert mm < 1.0 and deg < 0.1, (mm, deg)
    assert errors(target2gripper, result.target)[0] < 1.0
    assert result.parent_frame == "base"


def test_residual_exposes_inconsistent_data():
    g2b, t2c, _, _ = eye_in_hand_data()
    good = calibrate_hand_eye(g2b, t2c).residual
    shuffled = calibrate_hand_eye(g2b, t2c[1:] + t2c[:1]).residual  # poses no longer pair up
    assert shuffled.translation_mm_rms > 20 * good.translation_mm_rms
    assert shuffled.rotation_deg_rms > 20 * good.rotation_deg_rms
    wrong_mode = calibrate_hand_eye(g2b, t2c, mode="eye-to-hand").residual
    assert wrong_mode.translation_mm_rms > 10.0


def test_quaternion_round_trip():
    rng = np.random.default_rng(5)
    for _ in range(20):
        rot = random_rotation(rng, 179)
        q = rotation_to_quaternion(rot)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(quaternion_to_rotation(q), rot, atol=1e-12)


def test_bad_inputs_give_one_line_errors(tmp_path):
    g2b, t2c, _, _ = eye_in_hand_data()
    cases = [
        (lambda: calibrate_hand_eye(g2b[:2], t2c[:2]), "only 2 pose pairs"),
        (lambda: calibrate_hand_eye(g2b, t2c[:-1]), "15 gripper poses but 14 target poses"),
        (lambda: calibrate_hand_eye(g2b, t2c, method="FOO"), "unknown hand-eye method 'FOO'"),
        (lambda: calibrate_hand_eye(g2b, t2c, mode="eye-on-head"), "unknown hand-eye mode"),
        (lambda: calibrate_hand_eye([np.eye(3)] + g2b[1:], t2c), "pose 0 has shape"),
        (lambda: calibrate_hand_eye([2 * np.eye(4)] + g2b[1:], t2c), "not a rotation matrix"),
    ]
    for call, text in cases:
        with pytest.raises(CalibrationError, match=text) as err:
            call()
        assert "\n" not in str(err.value)
    poses = tmp_path / "poses.yaml"
    for content, text in [("poses: 3\n", "missing key 'poses'"),
                          ("poses:\n  - image: a.png\n", r"'poses\[0\]' needs gripper_to_base"),
                          ("poses:\n  - image: a.png\n    gripper_to_base: [[1, 0], [0, 1]]\n",
                           r"'poses\[0\].gripper_to_base' must be a 4x4"),
                          ("poses:\n  - translation: [0, 0, 0]\n    quaternion: [0, 0, 0, 1]\n",
                           "needs image or target_to_camera")]:
        poses.write_text(content)
        with pytest.raises(CalibrationError, match=text) as err:
            read_poses(poses)
        assert str(poses) in str(err.value) and "\n" not in str(err.value)


def test_cli_from_rendered_images(tmp_path, capsys):
    """End to end: render ChArUco views from a camera on the gripper, solvePnP, hand-eye, write YAML."""
    k = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    d = np.array([-0.1, 0.02, 0.0, 0.0, 0.0])
    spec = "charuco:7x5:0.035:0.026:DICT_4X4_50"
    renderer = BoardRenderer(parse_board(spec), k, d, (640, 480))
    rng = np.random.default_rng(7)
    cam2gripper = make_transform(random_rotation(rng, 10) @ np.diag([1.0, -1.0, -1.0]), [0.02, 0.04, 0.06])
    board_centre = renderer.board_center()
    target2base = make_transform(np.diag([1.0, -1.0, -1.0]), [0.55 - board_centre[0], board_centre[1], 0.0])
    images = tmp_path / "imgs"
    images.mkdir()
    entries = []
    for i in range(10):
        # look down at the board centre from ~0.45 m with varied tilt
        cam_rot = random_rotation(rng, 20) @ np.diag([1.0, -1.0, -1.0])
        cam_pos = np.array([0.55, 0.0, 0.0]) + np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), 0.0]) \
            - cam_rot[:, 2] * rng.uniform(0.4, 0.5)
        cam2base = make_transform(cam_rot, cam_pos)
        gripper2base = cam2base @ invert(cam2gripper)
        t2c = invert(cam2base) @ target2base
        rvec, _ = cv2.Rodrigues(t2c[:3, :3])
        cv2.imwrite(str(images / f"{i:02d}.png"), renderer.render(rvec, t2c[:3, 3], noise=1.0, rng=rng))
        entries.append({"image": f"{i:02d}.png", "translation": gripper2base[:3, 3].tolist(),
                        "quaternion": rotation_to_quaternion(gripper2base[:3, :3]).tolist()})
    cv2.imwrite(str(images / "99.png"), np.full((480, 640), 128, np.uint8))
    entries.append({"image": "99.png", "gripper_to_base": np.eye(4).tolist()})
    poses = tmp_path / "poses.yaml"
    poses.write_text(yaml.safe_dump({"poses": entries}))
    cam = write_camera_info(tmp_path / "cam.yaml", camera_info_from_calibration(k, d, (640, 480)))
    parser = argparse.ArgumentParser()
    calibrate_cmd.add_parser(parser.add_subparsers(dest="command"), "calibrate")
    out = tmp_path / "extrinsics.yaml"
    args = parser.parse_args(["calibrate", "hand-eye", "--poses", str(poses), "--images", str(images),
                              "--camera-info", str(cam), "--board", spec, "--mode", "eye-in-hand",
                              "--method", "park", "--out", str(out)])
    assert calibrate_cmd.run(args) == 0
    text = capsys.readouterr().out
    assert "board not found in 1 of 11 images: 99.png" in text and "residual" in text
    result = yaml.safe_load(out.read_text())
    assert result["mode"] == "eye-in-hand" and result["method"] == "PARK" and result["num_samples"] == 10
    mm, deg = errors(cam2gripper, np.array(result["transform"]))
    assert mm < 6.0 and deg < 0.5, (mm, deg)  # solvePnP on 640x480 renders at ~0.45 m: mm-level depth noise
    assert result["residual"]["translation_mm_rms"] < 6.0

    args = parser.parse_args(["calibrate", "hand-eye", "--poses", str(poses), "--out", str(out)])
    with pytest.raises(CalibrationError, match="give --images, --camera-info and --board"):
        calibrate_cmd.run(args)
