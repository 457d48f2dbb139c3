"""Camera intrinsics from images of a chessboard or ChArUco board (cv2.calibrateCamera)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from robot_rl.calibration.boards import BoardSpec, Detection, _scale_to_uint8, detect
from robot_rl.calibration.errors import CalibrationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MIN_IMAGES = 4


@dataclass
class IntrinsicsResult:
    """The outcome of an intrinsic calibration.

    ``per_image_error`` maps image name to the RMS reprojection error (pixels) of that image's corners;
    ``rms`` is the RMS over all corners of all used images; ``rejected`` lists images where the board was
    not found.
    """

    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    image_size: tuple[int, int]
    rms: float
    per_image_error: dict[str, float]
    board: BoardSpec
    rejected: list[str] = field(default_factory=list)
    rvecs: list[np.ndarray] = field(default_factory=list)
    tvecs: list[np.ndarray] = field(default_factory=list)

    @property
    def fx(self) -> float:
        return float(self.camera_matrix[0, 0])

    @property
    def fy(self) -> float:
        return float(self.camera_matrix[1, 1])

    @property
    def cx(self) -> float:
        return float(self.camera_matrix[0, 2])

    @property
    def cy(self) -> float:
        return float(self.camera_matrix[1, 2])


def list_images(directory: str | Path) -> list[Path]:
    """Image files in a directory, sorted by name; a one-line error when there are none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CalibrationError(f"{directory}: not a directory of images")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise CalibrationError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return paths


def load_images(images: Sequence[str | Path | np.ndarray],
                names: Sequence[str] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Read image paths (arrays pass through) and give each a name (the file name, or ``image_K``)."""
    arrays: list[np.ndarray] = []
    out_names: list[str] = []
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            arrays.append(item)
            out_names.append(names[i] if names else f"image_{i:03d}")
            continue
        path = Path(item)
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise CalibrationError(f"{path}: cannot read image")
        arrays.append(img)
        out_names.append(names[i] if names else path.name)
    return arrays, out_names


def _image_size(arrays: Sequence[np.ndarray], names: Sequence[str]) -> tuple[int, int]:
    sizes = {(a.shape[1], a.shape[0]) for a in arrays}
    if len(sizes) != 1:
        first = (arrays[0].shape[1], arrays[0].shape[0])
        odd = [n for a, n in zip(arrays, names, strict=True) if (a.shape[1], a.shape[0]) != first]
        raise CalibrationError(f"images differ in size: {names[0]} is {first[0]}x{first[1]} but "
                               f"{_short_list(odd)} are not")
    return sizes.pop()


def _short_list(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def detect_all(arrays: Sequence[np.ndarray], names: Sequence[str], board: BoardSpec,
               min_corners: int = 6) -> tuple[dict[str, Detection], list[str]]:
    """Detect the board in each image; return the detections by name and the names where it was not found."""
    found: dict[str, Detection] = {}
    rejected: list[str] = []
    for img, name in zip(arrays, names, strict=True):
        det = detect(img, board, min_corners=min_corners)
        if det is None:
            rejected.append(name)
        else:
            found[name] = det
    return found, rejected


def calibrate_intrinsics(images: Sequence[str | Path | np.ndarray], board: BoardSpec, *,
                         names: Sequence[str] | None = None, min_images: int = MIN_IMAGES,
                         fix_k3: bool = True, png: str | Path | None = None) -> IntrinsicsResult:
    """Calibrate a pinhole camera with plumb_bob distortion (k1, k2, p1, p2, k3) from board images.

    ``images`` are paths or arrays (gray or BGR). With ``fix_k3`` (the default) k3 stays 0, which is more
    stable for ordinary lenses. Raises CalibrationError when fewer than ``min_images`` images show the board
    (the message lists the images without it). With ``png``, writes a grid of thumbnails with the detected
    corners drawn.
    """
    arrays, names_ = load_images(images, names)
    if not arrays:
        raise CalibrationError("no images given")
    size = _image_size(arrays, names_)
    found, rejected = detect_all(arrays, names_, board)
    if len(found) < min_images:
        lead = (f"board {board} not found in {len(rejected)} of {len(arrays)} images: {_short_list(rejected)}; "
                if rejected else "")
        raise CalibrationError(f"{lead}only {len(found)} usable images, need at least {min_images}")
    obj = [found[n].object_points for n in found]
    img = [found[n].image_points for n in found]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-9)
    rms, k, d, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, np.eye(3), np.zeros(5), flags=flags,
                                                  criteria=criteria)
    per_image: dict[str, float] = {}
    for name, o, i, rv, tv in zip(found, obj, img, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(o, rv, tv, k, d)
        per_image[name] = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - i) ** 2, axis=1))))
    result = IntrinsicsResult(np.asarray(k, float), np.asarray(d, float).ravel(), size, float(rms), per_image,
                              board, rejected, list(rvecs), list(tvecs))
    if png is not None:
        write_corners_png(png, arrays, names_, found)
    return result


def write_corners_png(path: str | Path, arrays: Sequence[np.ndarray], names: Sequence[str],
                      detections: dict[str, Detection], thumb_width: int = 320) -> Path:
    """Write a grid of thumbnails with the detected corners drawn (green) or 'board not found' (red)."""
    path = Path(path)
    thumbs = []
    for img, name in zip(arrays, names, strict=True):
        gray = cv2.cvtColor(_to_bgr8(img), cv2.COLOR_BGR2GRAY)
        bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        scale = thumb_width / bgr.shape[1]
        thumb = cv2.resize(bgr, (thumb_width, max(1, round(bgr.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        det = detections.get(name)
        if det is not None:
            for u, v in det.image_points * scale:
                cv2.circle(thumb, (round(float(u)), round(float(v))), 3, (0, 200, 0), 1, cv2.LINE_AA)
            label, color = f"{name} ({len(det.image_points)})", (0, 160, 0)
        else:
            label, color = f"{name}: board not found", (0, 0, 220)
        cv2.rectangle(thumb, (0, 0), (thumb_width, 18), (255, 255, 255), -1)
        cv2.putText(thumb, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
        thumbs.append(thumb)
    cols = min(4, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    h = max(t.shape[0] for t in thumbs)
    grid = np.full((rows * (h + 4), cols * (thumb_width + 4), 3), 40, np.uint8)
    for i, t in enumerate(thumbs):
        r, c = divmod(i, cols)
        grid[r * (h + 4):r * (h + 4) + t.shape[0], c * (thumb_width + 4):c * (thumb_width + 4) + thumb_width] = t
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid):
        raise CalibrationError(f"{path}: cannot write PNG")
    return path


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = _scale_to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img
