"""Short rich reports of calibration results for the command line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from robot_rl.calibration.hand_eye import HandEyeResult
from robot_rl.calibration.intrinsics import IntrinsicsResult


def print_intrinsics(console: Console, result: IntrinsicsResult, worst: int = 5) -> None:
    """Camera matrix, distortion, RMS error and the images with the largest reprojection error."""
    w, h = result.image_size
    used = len(result.per_image_error)
    console.print(f"[bold]intrinsics[/] {w}x{h}, board {result.board}, {used} images used"
                  + (f", {len(result.rejected)} without the board" if result.rejected else ""))
    console.print(f"  fx {result.fx:.2f}  fy {result.fy:.2f}  cx {result.cx:.2f}  cy {result.cy:.2f}")
    console.print("  distortion (k1 k2 p1 p2 k3...) " + " ".join(f"{v:.5f}" for v in result.dist_coeffs))
    color = "green" if result.rms < 0.5 else "yellow" if result.rms < 1.0 else "red"
    console.print(f"  reprojection error RMS [{color}]{result.rms:.3f} px[/]")
    table = Table("image", "RMS px", title=f"worst {min(worst, used)} images", title_justify="left")
    for name, err in sorted(result.per_image_error.items(), key=lambda kv: -kv[1])[:worst]:
        table.add_row(name, f"{err:.3f}")
    console.print(table)


def print_hand_eye(console: Console, result: HandEyeResult) -> None:
    """The camera pose, its quaternion and the consistency residual."""
    d = result.to_dict()
    r = result.residual
    console.print(f"[bold]hand-eye[/] {result.mode}, method {result.method}, {result.num_samples} samples: "
                  f"camera in {result.parent_frame} frame")
    console.print("  translation m  " + " ".join(f"{v:.4f}" for v in d["translation"]))
    console.print("  quaternion xyzw " + " ".join(f"{v:.5f}" for v in d["quaternion_xyzw"]))
    frame = "base" if result.mode == "eye-in-hand" else "gripper"
    color = "green" if r.translation_mm_rms < 2 and r.rotation_deg_rms < 0.5 else "yellow"
    console.print(f"  residual (spread of the target pose in the {frame} frame): [{color}]"
                  f"{r.translation_mm_rms:.2f} mm RMS, {r.translation_mm_max:.2f} mm max, "
                  f"{r.rotation_deg_rms:.3f} deg RMS, {r.rotation_deg_max:.3f} deg max[/]")
    console.print(f"  gripper motion: largest rotation between poses {result.rotation_spread_deg:.1f} deg, "
                  f"condition {result.motion_condition:.3g} (1-3: rotations about varied axes)")
