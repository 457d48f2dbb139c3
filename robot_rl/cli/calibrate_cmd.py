"""``robot-rl calibrate``: camera intrinsics (camera_info YAML) and hand-eye extrinsics from board images."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robot_rl.cli.errors import UserError
from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output

MIN_VIEWS = 3
"""Fewest board images ``--min-images`` may ask for: Zhang's method needs three views of a plane for the five
intrinsics."""
BOARD_HELP = ("board spec: chessboard:COLSxROWS:SQUARE_M (inner corners) or "
              "charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT] (squares), or a board YAML file")
ACCEPT_POOR_HELP = ("write a result that fails a quality gate (see robot_rl/calibration/quality.py) with a warning "
                    "instead of refusing it")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    calib = p.add_subparsers(dest="calibrate_command", required=True, metavar="KIND")

    i = calib.add_parser("intrinsics", help="camera matrix and distortion from board images",
                         description="Camera matrix and distortion from board images; writes camera_info YAML.")
    i.add_argument("--images", required=True, type=Path, help="folder of board images")
    i.add_argument("--board", required=True, help=BOARD_HELP)
    i.add_argument("--out", required=True, type=Path, help="camera_info YAML to write, e.g. calibration/ROBOT/cam.yaml")
    i.add_argument("--png", type=Path, default=None, help="write a grid of thumbnails with the detected corners")
    i.add_argument("--camera-name", default="camera", help="camera_name in the YAML")
    i.add_argument("--min-images", type=int, default=4, help="fewest images with the board found (default 4)")
    i.add_argument("--free-k3", action="store_true", help="also estimate k3 (default: k3 = 0)")
    i.add_argument("--accept-poor", action="store_true", help=ACCEPT_POOR_HELP)

    h = calib.add_parser("hand-eye", help="camera pose relative to the gripper or the robot base",
                         description="Camera pose relative to the gripper (eye-in-hand) or base (eye-to-hand).")
    h.add_argument("--poses", required=True, type=Path,
                   help="YAML: poses: [{image, gripper_to_base 4x4 | translation + quaternion xyzw}]")
    h.add_argument("--images", type=Path, default=None, help="folder of the images named in the poses file")
    h.add_argument("--camera-info", type=Path, default=None, help="camera_info YAML of the camera")
    h.add_argument("--board", default=None, help=BOARD_HELP)
    h.add_argument("--mode", default="eye-in-hand", choices=["eye-in-hand", "eye-to-hand"])
    h.add_argument("--method", default="TSAI", type=str.upper,
                   choices=["TSAI", "PARK", "HORAUD", "ANDREFF", "DANIILIDIS"])
    h.add_argument("--out", required=True, type=Path, help="extrinsics YAML to write")
    h.add_argument("--accept-poor", action="store_true", help=ACCEPT_POOR_HELP)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    check_output(args.out, "--out", "file")
    if getattr(args, "png", None) is not None:
        check_output(args.png, "--png", "file")
    if args.calibrate_command == "intrinsics":
        if args.min_images < MIN_VIEWS:
            raise UserError(f"--min-images must be >= {MIN_VIEWS} (fewer views of a planar board cannot fix the "
                            f"camera matrix), got {args.min_images}")
        return _intrinsics(args, console)
    return _hand_eye(args, console)


def _intrinsics(args: argparse.Namespace, console) -> int:
    from robot_rl.calibration import (
        calibrate_intrinsics,
        camera_info_from_calibration,
        list_images,
        parse_board,
        write_camera_info,
    )
    from robot_rl.calibration.quality import check_intrinsics
    from robot_rl.calibration.report import print_intrinsics

    board = parse_board(args.board)
    paths = list_images(args.images)
    result = calibrate_intrinsics(paths, board, min_images=args.min_images, fix_k3=not args.free_k3, png=args.png)
    print_intrinsics(console, result)
    _gate(console, check_intrinsics, result, args.accept_poor)
    info = camera_info_from_calibration(result.camera_matrix, result.dist_coeffs, result.image_size,
                                        args.camera_name)
    write_camera_info(args.out, info)
    if result.rejected:
        console.print(f"[yellow]board not found in {len(result.rejected)} of {len(paths)} images: "
                      f"{', '.join(result.rejected[:5])}{' ...' if len(result.rejected) > 5 else ''}[/]")
    console.print(f"wrote {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0


def _hand_eye(args: argparse.Namespace, console) -> int:
    import cv2

    from robot_rl.calibration import (
        CalibrationError,
        calibrate_hand_eye,
        parse_board,
        read_camera_info,
        read_poses,
        target_pose,
        write_extrinsics,
    )
    from robot_rl.calibration.quality import check_hand_eye
    from robot_rl.calibration.report import print_hand_eye

    samples = read_poses(args.poses)
    needs_images = [s for s in samples if s.target2cam is None]
    if needs_images and (args.images is None or args.camera_info is None or args.board is None):
        raise CalibrationError(f"{args.poses}: {len(needs_images)} entries name images; give --images, "
                               "--camera-info and --board")
    g2b, t2c, missing, unreadable = [], [], [], []
    if needs_images:
        info = read_camera_info(args.camera_info)
        board = parse_board(args.board)
    for s in samples:
        if s.target2cam is not None:
            g2b.append(s.gripper2base)
            t2c.append(s.target2cam)
            continue
        path = args.images / str(s.image)
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            unreadable.append(str(s.image))
            continue
        pose = target_pose(img, board, info.K, info.D)
        if pose is None:
            missing.append(str(s.image))
            continue
        g2b.append(s.gripper2base)
        t2c.append(pose)
    if unreadable:
        raise CalibrationError(f"{args.images}: cannot read {len(unreadable)} images named in {args.poses}: "
                               f"{', '.join(unreadable[:5])}{' ...' if len(unreadable) > 5 else ''}")
    if missing:
        console.print(f"[yellow]board not found in {len(missing)} of {len(needs_images)} images: "
                      f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}[/]")
    if len(g2b) < 3:
        raise CalibrationError(f"{args.poses}: only {len(g2b)} usable samples"
                               + (f" (board not found in {len(missing)} of {len(needs_images)} images: "
                                  f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})" if missing else "")
                               + ", need at least 3")
    result = calibrate_hand_eye(g2b, t2c, args.mode, args.method)
    print_hand_eye(console, result)
    _gate(console, check_hand_eye, result, args.accept_poor)
    write_extrinsics(args.out, result)
    console.print(f"wrote {args.out}")
    return 0


def _gate(console, check: Callable[[Any], None], result: Any, accept_poor: bool) -> None:
    """Refuse a result that fails a quality gate (``check`` raises), or only warn about it under --accept-poor."""
    from robot_rl.calibration.quality import CalibrationQualityError

    try:
        check(result)
    except CalibrationQualityError as e:
        if not accept_poor:
            raise
        console.print(f"[yellow]warning: --accept-poor: writing it anyway: {e}[/]")
