"""Pinhole camera looking at the seated person: person-frame points (metres) -> pixels.

A point ``p`` (person frame, :mod:`simulator.skeleton`) is turned by the person's yaw
relative to the camera, moved so that the body centre ``c`` is at the origin, tilted by the camera's
downward pitch, and projected::

    q = R_x(pitch) @ (R_y(yaw) @ p - c)          # camera frame, z towards the camera
    depth = distance - q_z                         # metres from the camera
    u = cx + f * q_x / depth,   v = cy + f * q_y / depth

``f`` is chosen so that the seated person (head top to feet, about :data:`PERSON_EXTENT` m at unit
scale) fills ``fill`` of the image height at ``distance``, unless the widest pose (:data:`PERSON_SPAN`)
would then not fit the width left by the horizontal offset (narrow portrait frames): the person is
then drawn smaller. ``(cx, cy)`` is the image centre plus the framing offset (a fraction of the image
size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.skeleton import rot_x, rot_y

__all__ = ["Camera", "PERSON_EXTENT", "PERSON_SPAN", "BODY_CENTRE"]

PERSON_EXTENT = 1.50
"""Seated height, head top to the floor, in metres at body scale 1 (used to set the focal length)."""
PERSON_SPAN = 1.75
"""Widest pose (both arms stretched sideways), metres at body scale 1: it must fit the image width."""
BODY_CENTRE = np.array([0.0, -0.14, 0.25])
"""The point (person frame, metres) that the camera centres on before the framing offset."""


@dataclass(frozen=True)
class Camera:
    """Camera intrinsics and placement (see module docstring).

    Attributes
    ----------
    size : (width, height) in pixels
    distance : metres from the camera to the body centre (perspective strength)
    fill : share of the image height the seated person covers
    offset : (dx, dy) framing offset as fractions of (width, height)
    yaw : rad, the person's body turned relative to the camera
    pitch : rad, the camera looking down (thighs appear foreshortened but visible)
    scale : body scale (so ``fill`` refers to this person's size)
    """

    size: tuple[int, int]
    distance: float = 3.0
    fill: float = 0.75
    offset: tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0
    pitch: float = 0.3
    scale: float = 1.0

    @property
    def focal(self) -> float:
        by_height = self.fill * self.size[1] * self.distance / (PERSON_EXTENT * self.scale)
        width_left = self.size[0] * (1.0 - 2.0 * abs(self.offset[0])) * 0.96
        by_width = width_left * (self.distance - 0.3 * self.scale) / (PERSON_SPAN * self.scale)
        return min(by_height, by_width)

    @property
    def centre(self) -> tuple[float, float]:
        w, h = self.size
        return (w / 2 + self.offset[0] * w, h / 2 + self.offset[1] * h)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] person-frame points -> [N, 3] camera-frame points (x right, y down, z to camera)."""
        turned = np.asarray(points, float) @ rot_y(self.yaw).T - BODY_CENTRE * self.scale
        return turned @ rot_x(self.pitch).T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, 3] person-frame points -> ([N, 2] pixels, [N] depth in metres from the camera)."""
        q = self.to_camera(points)
        depth = self.distance - q[:, 2]
        f = self.focal
        cx, cy = self.centre
        uv = np.stack([cx + f * q[:, 0] / depth, cy + f * q[:, 1] / depth], axis=1)
        return uv, depth

    def pixels_per_metre(self, depth: float | np.ndarray) -> float | np.ndarray:
        return self.focal / depth
