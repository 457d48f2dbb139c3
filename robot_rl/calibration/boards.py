"""Calibration boards: parse a spec string or YAML file, build the OpenCV board, detect its corners."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from robot_rl.calibration.errors import CalibrationError, read_yaml

KINDS = ("chessboard", "charuco")


@dataclass(frozen=True)
class BoardSpec:
    """A planar calibration board.

    chessboard: ``cols`` x ``rows`` are the *inner corners* (OpenCV's pattern size, e.g. 9x6 for a board of
    10x7 squares); charuco: ``cols`` x ``rows`` are the *squares*. Lengths are in metres.
    """

    kind: str
    cols: int
    rows: int
    square: float
    marker: float = 0.0
    dictionary: str = "DICT_4X4_50"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CalibrationError(f"board kind '{self.kind}' is not one of {', '.join(KINDS)}")
        if self.cols < 2 or self.rows < 2:
            raise CalibrationError(f"board needs at least 2x2 corners/squares, got {self.cols}x{self.rows}")
        if self.square <= 0:
            raise CalibrationError(f"board square size must be > 0, got {self.square}")
        if self.kind == "charuco":
            if not 0 < self.marker < self.square:
                raise CalibrationError(f"charuco marker size must be in (0, square={self.square}), got {self.marker}")
            if not hasattr(cv2.aruco, self.dictionary):
                raise CalibrationError(f"unknown ArUco dictionary '{self.dictionary}' (e.g. DICT_4X4_50)")

    def __str__(self) -> str:
        if self.kind == "chessboard":
            return f"chessboard:{self.cols}x{self.rows}:{self.square:g}"
        return f"charuco:{self.cols}x{self.rows}:{self.square:g}:{self.marker:g}:{self.dictionary}"

    @property
    def num_corners(self) -> int:
        """Number of corners a full detection finds."""
        if self.kind == "chessboard":
            return self.cols * self.rows
        return (self.cols - 1) * (self.rows - 1)

    def charuco_board(self) -> cv2.aruco.CharucoBoard:
        """The OpenCV ChArUco board (charuco boards only)."""
        if self.kind != "charuco":
            raise CalibrationError(f"{self} is not a charuco board")
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.cols, self.rows), self.square, self.marker, dictionary)

    def chessboard_object_points(self) -> np.ndarray:
        """Inner-corner coordinates (N, 3) of a chessboard in metres, row by row, z = 0."""
        grid = np.mgrid[0:self.cols, 0:self.rows].T.reshape(-1, 2)
        pts = np.zeros((self.cols * self.rows, 3), np.float32)
        pts[:, :2] = grid * self.square
        return pts


def parse_board(spec: str) -> BoardSpec:
    """Parse ``chessboard:COLSxROWS:SQUARE`` or ``charuco:COLSxROWS:SQUARE:MARKER[:DICT]``, or a YAML file path."""
    if spec.endswith((".yaml", ".yml")):
        return load_board(spec)
    parts = spec.split(":")
    try:
        kind = parts[0]
        cols, rows = (int(v) for v in parts[1].lower().split("x"))
        if kind == "chessboard" and len(parts) == 3:
            return BoardSpec("chessboard", cols, rows, float(parts[2]))
        if kind == "charuco" and len(parts) in (4, 5):
            return BoardSpec("charuco", cols, rows, float(parts[2]), float(parts[3]),
                             parts[4] if len(parts) == 5 else "DICT_4X4_50")
    except (IndexError, ValueError) as e:
        if isinstance(e, CalibrationError):
            raise
    raise CalibrationError(f"bad board spec '{spec}': expected chessboard:9x6:0.025 or "
                           "charuco:5x7:0.04:0.03:DICT_4X4_50 or a board YAML file")


def load_board(path: str | Path) -> BoardSpec:
    """Read a board spec YAML (keys: kind, cols, rows, square, and for charuco marker, dictionary)."""
    path = Path(path)
    data = read_yaml(path, "board")
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a mapping with keys kind, cols, rows, square")
    for key in ("kind", "cols", "rows", "square"):
        if key not in data:
            raise CalibrationError(f"{path}: missing key '{key}'")
    try:
        return BoardSpec(str(data["kind"]), int(data["cols"]), int(data["rows"]), float(data["square"]),
                         float(data.get("marker", 0.0)), str(data.get("dictionary", "DICT_4X4_50")))
    except (TypeError, ValueError) as e:
        if isinstance(e, CalibrationError):
            raise CalibrationError(f"{path}: {e}") from None
        raise CalibrationError(f"{path}: bad value in board spec ({e})") from None


@dataclass
class Detection:
    """Corners found in one image: pixel coordinates (N, 2) and the matching board coordinates (N, 3)."""

    image_points: np.ndarray
    object_points: np.ndarray


def to_gray(image: np.ndarray) -> np.ndarray:
    """An 8-bit grayscale copy of a gray, BGR or BGRA image."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        image = _scale_to_uint8(image)
    return image


def _scale_to_uint8(image: np.ndarray) -> np.ndarray:
    """Stretch any numeric image to 0..255 and convert to uint8."""
    a = image.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)).astype(np.uint8)


def detect(image: np.ndarray, board: BoardSpec, min_corners: int = 6) -> Detection | None:
    """Find the board in an image; None when it is not found or fewer than ``min_corners`` corners are seen."""
    gray = to_gray(image)
    if board.kind == "chessboard":
        return _detect_chessboard(gray, board)
    cboard = board.charuco_board()
    detector = cv2.aruco.CharucoDetector(cboard)
    corners, ids, _, _ = detector.detectBoard(gray)
    if ids is None or len(ids) < max(min_corners, 4):
        return None
    obj, img = cboard.matchImagePoints(corners, ids)  # type: ignore[call-overload]
    if obj is None or len(obj) < max(min_corners, 4):
        return None
    return Detection(img.reshape(-1, 2).astype(np.float32), obj.reshape(-1, 3).astype(np.float32))


def _detect_chessboard(gray: np.ndarray, board: BoardSpec) -> Detection | None:
    size = (board.cols, board.rows)
    found, corners = cv2.findChessboardCornersSB(gray, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(gray, size, flags=flags)
        if not found:
            return None
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
        corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)
    return Detection(corners.reshape(-1, 2).astype(np.float32), board.chessboard_object_points())


def board_texture(board: BoardSpec, px_per_square: int, margin_squares: int = 1) -> tuple[np.ndarray, float]:
    """A printable grayscale image of the board and its origin offset in pixels.

    Board coordinate (x, y) in metres lies at texture pixel ``offset + (x, y) * px_per_square / square``.
    """
    margin = margin_squares * px_per_square
    if board.kind == "charuco":
        cols, rows = board.cols, board.rows
        inner = board.charuco_board().generateImage((cols * px_per_square, rows * px_per_square), marginSize=0)
        tex = np.full((rows * px_per_square + 2 * margin, cols * px_per_square + 2 * margin), 255, np.uint8)
        tex[margin:margin + inner.shape[0], margin:margin + inner.shape[1]] = inner
        return tex, float(margin)
    cols, rows = board.cols + 1, board.rows + 1
    cells = (np.indices((rows, cols)).sum(axis=0) % 2 == 0).astype(np.uint8) * 255
    cells = 255 - cells  # top-left square black
    inner = np.kron(cells, np.ones((px_per_square, px_per_square), np.uint8))
    tex = np.full((rows * px_per_square + 2 * margin, cols * px_per_square + 2 * margin), 255, np.uint8)
    tex[margin:margin + inner.shape[0], margin:margin + inner.shape[1]] = inner
    # the first inner corner (object point 0, 0) sits one square in from the squares' top-left corner
    return tex, float(margin + px_per_square)
