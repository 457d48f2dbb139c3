"""Quality gates: degenerate or poor calibration results are refused with their numbers, not written."""

import cv2
import numpy as np
import pytest
import yaml

from robot_rl.calibration import (
    CalibrationQualityError,
    calibrate_hand_eye,
    calibrate_intrinsics,
    check_hand_eye,
    check_intrinsics,
    parse_board,
)
from robot_rl.calibration.hand_eye import invert
from robot_rl.calibration.quality import MAX_HAND_EYE_RESIDUAL_MM, MAX_MOTION_CONDITION, MIN_ROTATION_SPREAD_DEG
from robot_rl.calibration.synthetic import BoardRenderer, make_transform, random_rotation
from robot_rl.cli.main import main
from tests.calibration.test_hand_eye import eye_in_hand_data

SIZE = (640, 480)
CHESS = "chessboard:9x6:0.025"


def test_good_data_passes_every_gate():
    g2b, t2c, _, _ = eye_in_hand_data()
    result = calibrate_hand_eye(g2b, t2c)
    check_hand_eye(result)
    assert result.rotation_spread_deg > 30 and result.motion_condition < 3


def test_identical_poses_refused_with_numbers():
    """Four identical poses: OpenCV returns the identity ("Hand-eye calibration failed!"); it must not pass."""
    g2b, t2c, _, _ = eye_in_hand_data()
    same = calibrate_hand_eye([g2b[0]] * 4, [t2c[0]] * 4)
    assert np.allclose(same.transform, np.eye(4)) and same.rotation_spread_deg == 0.0
    with pytest.raises(CalibrationQualityError) as err:
        check_hand_eye(same)
    msg = str(err.value)
    assert "\n" not in msg and "rotation spread 0.00 deg" in msg and "identity" in msg and "4 samples" in msg
    # the same gripper pose paired with four different board views: a large residual as well
    mixed = calibrate_hand_eye([g2b[0]] * 4, t2c[:4])
    with pytest.raises(CalibrationQualityError, match=r"rotation spread 0\.00 deg.*residual \d+\.\d\d mm RMS > 10"):
        check_hand_eye(mixed)


def test_rotation_about_one_axis_refused():
    rng = np.random.default_rng(3)
    x = make_transform(random_rotation(rng, 90), [0.03, -0.05, 0.08])
    target2base = make_transform(np.eye(3), [0.6, 0.1, 0.0])
    g2b = [make_transform(cv2.Rodrigues(np.array([0.0, 0.0, np.deg2rad(a)]))[0], [0.5, 0.05 * i, 0.4])
           for i, a in enumerate([0, 20, 40, 60, 80])]
    t2c = [invert(x) @ invert(g) @ target2base for g in g2b]
    result = calibrate_hand_eye(g2b, t2c)
    assert result.rotation_spread_deg > MIN_ROTATION_SPREAD_DEG and result.motion_condition > MAX_MOTION_CONDITION
    with pytest.raises(CalibrationQualityError, match="rotations about fewer than two axes"):
        check_hand_eye(result)


def test_residual_above_threshold_refused():
    g2b, t2c, _, _ = eye_in_hand_data()
    shuffled = calibrate_hand_eye(g2b, t2c[1:] + t2c[:1])
    assert shuffled.residual.translation_mm_rms > MAX_HAND_EYE_RESIDUAL_MM
    with pytest.raises(CalibrationQualityError, match=r"residual \d+\.\d\d mm RMS > 10") as err:
        check_hand_eye(shuffled)
    assert f"{shuffled.residual.translation_mm_rms:.2f} mm" in str(err.value)


def write_poses(path, g2b, t2c):
    path.write_text(yaml.safe_dump({"poses": [{"gripper_to_base": g.tolist(), "target_to_camera": t.tolist()}
                                              for g, t in zip(g2b, t2c, strict=True)]}))
    return path


def test_cli_refuses_identical_poses_and_writes_nothing(tmp_path, capsys):
    g2b, t2c, _, _ = eye_in_hand_data()
    poses = write_poses(tmp_path / "poses.yaml", [g2b[0]] * 4, [t2c[0]] * 4)
    out = tmp_path / "extrinsics.yaml"
    assert main(["calibrate", "hand-eye", "--poses", str(poses), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Hand-eye calibration failed" not in err
    assert "hand-eye result refused" in err and "rotation spread 0.00 deg" in err and "--accept-poor" in err
    assert not out.exists()
    assert main(["calibrate", "hand-eye", "--poses", str(poses), "--out", str(out), "--accept-poor"]) == 0
    assert "warning" in capsys.readouterr().out
    assert yaml.safe_load(out.read_text())["motion"]["rotation_spread_deg"] == 0.0

    good = write_poses(tmp_path / "good.yaml", g2b, t2c)
    assert main(["calibrate", "hand-eye", "--poses", str(good), "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().out


def render_views(k: np.ndarray, n: int, seed: int, d: np.ndarray | None = None,
                 depth: tuple[float, float] = (0.45, 0.55)) -> list[np.ndarray]:
    renderer = BoardRenderer(parse_board(CHESS), k, np.zeros(5) if d is None else d, SIZE)
    rng = np.random.default_rng(seed)
    centre = renderer.board_center()
    images = []
    for _ in range(n):
        rot = random_rotation(rng, 30)
        pos = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04), rng.uniform(*depth)])
        rvec, _ = cv2.Rodrigues(rot)
        images.append(renderer.render(rvec, pos - rot @ centre, noise=1.0, rng=rng))
    return images


def test_intrinsics_with_implausible_aspect_refused(tmp_path, capsys):
    """A camera matrix with fy/fx = 1.57 is fitted faithfully but refused as implausible."""
    k = np.array([[400.0, 0, 320], [0, 628.0, 240], [0, 0, 1]])
    images = tmp_path / "imgs"
    images.mkdir()
    for i, img in enumerate(render_views(k, 6, seed=2)):
        cv2.imwrite(str(images / f"{i}.png"), img)
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", "intrinsics", "--images", str(images), "--board", CHESS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "intrinsics refused" in err and "fy/fx 1.57" in err
    assert not out.exists()
    assert main(["calibrate", "intrinsics", "--images", str(images), "--board", CHESS, "--out", str(out),
                 "--accept-poor"]) == 0
    assert out.exists()


def test_intrinsics_with_high_rms_refused():
    """Views from two different lenses mixed into one calibration: one model cannot explain both distortions."""
    k1 = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    barrel, pincushion = np.array([-0.45, 0.2, 0, 0, 0]), np.array([0.35, 0.1, 0, 0, 0])
    near = (0.25, 0.3)  # the board fills the image, where the distortions differ most
    result = calibrate_intrinsics(render_views(k1, 4, 5, barrel, near) + render_views(k1, 4, 6, pincushion, near),
                                  parse_board(CHESS))
    assert result.rms > 1.0
    with pytest.raises(CalibrationQualityError, match=rf"reprojection error {result.rms:.3f} px RMS > 1") as err:
        check_intrinsics(result)
    assert "worst image image_" in str(err.value)
    check_intrinsics(calibrate_intrinsics(render_views(k1, 6, 5, barrel, near), parse_board(CHESS)))
