"""Synthetic board images and poses with known ground truth, for tests and for checking a calibration setup."""

from __future__ import annotations

import cv2
import numpy as np

from robot_rl.calibration.boards import BoardSpec, board_texture


class BoardRenderer:
    """Render a board seen by a pinhole camera with plumb_bob distortion, exactly (per-pixel remap).

    Each output pixel is undistorted to a normalized ray once (cv2.undistortPointsIter); per pose the ray is
    intersected with the board plane through the homography [r1 r2 t] and the board texture is sampled there.
    """

    def __init__(self, board: BoardSpec, camera_matrix: np.ndarray, dist_coeffs: np.ndarray,
                 image_size: tuple[int, int], px_per_square: int = 80) -> None:
        self.board = board
        self.size = image_size
        self.texture, self.offset = board_texture(board, px_per_square)
        self.scale = px_per_square / board.square
        w, h = image_size
        uv = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), -1)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
        norm = cv2.undistortPointsIter(uv.reshape(-1, 1, 2), np.asarray(camera_matrix, np.float64),
                                       np.asarray(dist_coeffs, np.float64), np.eye(3), np.eye(3), criteria)
        self.rays = np.concatenate([norm.reshape(-1, 2), np.ones((w * h, 1))], axis=1)

    def render(self, rvec: np.ndarray, tvec: np.ndarray, blur: float = 0.6, noise: float = 0.0,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """An 8-bit gray image of the board at pose (rvec, tvec) = board-to-camera; outside the board is gray."""
        rot, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
        hom = np.column_stack([rot[:, 0], rot[:, 1], np.asarray(tvec, np.float64).ravel()])
        board_xy = self.rays @ np.linalg.inv(hom).T
        z = board_xy[:, 2]
        valid = z > 0  # rays that hit the front of the plane
        with np.errstate(divide="ignore", invalid="ignore"):
            mx = np.where(valid, board_xy[:, 0] / z * self.scale + self.offset, -1)
            my = np.where(valid, board_xy[:, 1] / z * self.scale + self.offset, -1)
        w, h = self.size
        img = cv2.remap(self.texture, mx.reshape(h, w).astype(np.float32), my.reshape(h, w).astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=128)
        if blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        if noise > 0:
            rng = rng or np.random.default_rng(0)
            img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        return img

    def board_center(self) -> np.ndarray:
        """The centre of the board's printed area in board coordinates (metres)."""
        h, w = self.texture.shape
        return np.array([(w / 2 - self.offset) / self.scale, (h / 2 - self.offset) / self.scale, 0.0])


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation matrix about a random axis by an angle uniform in [-max_deg, max_deg]."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    rot, _ = cv2.Rodrigues(axis * angle)
    return rot


def make_transform(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """A 4x4 homogeneous transform from a 3x3 rotation and a translation."""
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = np.asarray(trans, float).ravel()
    return t


def perturb(transform: np.ndarray, rng: np.random.Generator, trans_sigma: float, rot_sigma_deg: float) -> np.ndarray:
    """Apply Gaussian noise (metres, degrees) to a 4x4 transform."""
    rvec = rng.normal(0, np.deg2rad(rot_sigma_deg), 3)
    noise, _ = cv2.Rodrigues(rvec)
    out = transform.copy()
    out[:3, :3] = noise @ transform[:3, :3]
    out[:3, 3] += rng.normal(0, trans_sigma, 3)
    return out
