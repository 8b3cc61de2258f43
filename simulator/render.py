"""Draw the seated person, chair and room with OpenCV, then lighting change and sensor noise.

Drawing is vectorised OpenCV calls only (no per-pixel Python): a static background (wall, floor,
chair) is drawn once per participant; each frame copies it, draws about 30 primitives (filled
capsules for limbs, a polygon torso, ellipses for the head, hair, eyes, nose and mouth) in
back-to-front order of their camera depth (painter's algorithm; hands and forearms get a small bias
towards the camera so a hand resting on the thigh or touching the face is drawn on top), applies a
slow global brightness change ``gain(t) = 1 + A sin(2 pi t / period + phase)`` plus a constant offset,
and adds Gaussian sensor noise (a seeded bank of noise frames, see :class:`Renderer`). Coordinates are drawn with 4 bits of sub-pixel precision
(``shift=4``), so motions of a fraction of a pixel per frame still move the drawing smoothly.

Frames are BGR ``uint8`` arrays of shape [H, W, 3] for a camera size (W, H).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from simulator.appearance import Look
from simulator.skeleton import SIDES

__all__ = ["Renderer", "write_mp4", "FOURCC"]

FOURCC = "mp4v"
_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_NOISE_BANK = 8


def _fx(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(v * f))) for v in c)  # type: ignore[return-value]


class Renderer:
    """Renders frames of one participant (one :class:`~simulator.appearance.Look`).

    Parameters
    ----------
    look : the participant's look (its camera holds the frame size)
    seed : seed of the sensor noise
    """

    def __init__(self, look: Look, seed: int = 0) -> None:
        self.look = look
        self.cam = look.camera
        self.rng = np.random.default_rng(seed)
        w, h = self.cam.size
        # Sensor noise: a bank of seeded Gaussian frames (numpy, so the seed decides them; OpenCV's randn
        # uses a process-global generator), each used as is or flipped: 32 patterns. Each is kept as its
        # positive and negative parts in uint8, so adding it is two saturating uint8 operations,
        # clip(clip(img + pos) - neg) = clip(img + noise) as only one part is non-zero per element.
        self._noise_bank = []
        for _ in range(_NOISE_BANK if look.noise_sigma > 0 else 0):
            noise = np.round(self.rng.standard_normal((h, w, 3), dtype=np.float32) * look.noise_sigma)
            noise = np.clip(noise, -255, 255)
            self._noise_bank.append((np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)))
        self.background = self._draw_background()

    # ---------------------------------------------------------------- static scene
    def _draw_background(self) -> np.ndarray:
        look, cam = self.look, self.cam
        w, h = cam.size
        k = look.body.scale
        img = np.empty((h, w, 3), np.uint8)
        floor_y = 0.50 * k + 0.04 * k
        horizon = cam.project(np.array([[0.0, floor_y, -0.9 * k]]))[0][0, 1]
        hz = int(np.clip(horizon, 0, h))
        # wall: gentle vertical gradient (light from above); floor: darker towards the camera
        ramp = np.linspace(1.05, 0.9, max(hz, 1))[:, None, None]
        img[:hz] = np.clip(np.array(look.wall, float)[None, None, :] * ramp, 0, 255).astype(np.uint8)
        ramp = np.linspace(1.0, 0.8, max(h - hz, 1))[:, None, None]
        img[hz:] = np.clip(np.array(look.floor, float)[None, None, :] * ramp, 0, 255).astype(np.uint8)
        cv2.line(img, (0, hz), (w, hz), _shade(look.wall, 0.7), max(1, h // 150), _AA)
        # chair: back (behind the torso), seat, four legs
        chair = look.chair
        seat_y = 0.06 * k
        corners = np.array([
            [-0.24, seat_y, -0.14], [0.24, seat_y, -0.14], [0.24, seat_y, 0.38], [-0.24, seat_y, 0.38],
        ]) * np.array([k, 1.0, k])
        back = np.array([
            [-0.22, seat_y, -0.16], [0.22, seat_y, -0.16], [0.22, -0.50 * k, -0.20 * k], [-0.22, -0.50 * k, -0.20 * k],
        ]) * np.array([k, 1.0, 1.0])
        legs = [(c, c + np.array([0.0, floor_y - seat_y, 0.0])) for c in corners]
        for a, b in legs:
            uv, _ = cam.project(np.stack([a, b]))
            cv2.line(img, _fx(uv[0]), _fx(uv[1]), _shade(chair, 0.7), max(2, int(cam.pixels_per_metre(cam.distance) * 0.03)), _AA, _SHIFT)
        uv, _ = cam.project(back)
        cv2.fillConvexPoly(img, (uv * _ONE).round().astype(np.int32), _shade(chair, 0.85), _AA, _SHIFT)
        uv, _ = cam.project(corners)
        cv2.fillConvexPoly(img, (uv * _ONE).round().astype(np.int32), chair, _AA, _SHIFT)
        return img

    # ---------------------------------------------------------------- person
    def draw_person(self, img: np.ndarray, joints: dict[str, np.ndarray]) -> None:
        """Draw the person given :func:`~simulator.skeleton.skeleton_at` joints onto ``img``."""
        look, cam = self.look, self.cam
        k = look.body.scale
        names = [n for n, v in joints.items() if v.shape == (3,)]
        uv_all, depth_all = cam.project(np.stack([joints[n] for n in names]))
        uv = dict(zip(names, uv_all))
        dp = dict(zip(names, depth_all))
        ppm = cam.focal / cam.distance
        limb = max(3, int(round(look.body.limb * k * ppm)))
        items: list[tuple[float, callable]] = []

        def capsule(a: str, b: str, colour, thick: int, bias: float = 0.0):
            d = 0.5 * (dp[a] + dp[b]) - bias
            pa, pb = uv[a], uv[b]

            def draw():
                cv2.line(img, _fx(pa), _fx(pb), colour, thick, _AA, _SHIFT)
            items.append((d, draw))

        sleeve = look.skin if look.short_sleeves else _shade(look.shirt, 0.92)
        for s in SIDES:
            capsule(f"{s}_hip", f"{s}_knee", look.trousers, int(limb * 1.45), bias=-0.05)
            capsule(f"{s}_knee", f"{s}_ankle", _shade(look.trousers, 0.9), int(limb * 1.2))
            capsule(f"{s}_heel", f"{s}_toe", look.shoes, int(limb * 1.1), bias=0.02)
            capsule(f"{s}_shoulder", f"{s}_elbow", look.shirt, int(limb * 1.15), bias=0.03)
            capsule(f"{s}_elbow", f"{s}_wrist", sleeve, int(limb * 0.95), bias=0.045)
            self._hand(items, img, uv, dp, s, limb)
        # torso: polygon through shoulders and hips, widened a little
        tor = np.stack([uv["r_shoulder"], uv["l_shoulder"], uv["l_hip"], uv["r_hip"]])
        centre = tor.mean(0)
        tor = centre + (tor - centre) * np.array([[1.12, 1.0]])
        d_t = float(np.mean([dp["r_shoulder"], dp["l_shoulder"], dp["r_hip"], dp["l_hip"]]))

        def torso():
            cv2.fillConvexPoly(img, (tor * _ONE).round().astype(np.int32), look.shirt, _AA, _SHIFT)
            cv2.line(img, _fx(uv["r_shoulder"]), _fx(uv["l_shoulder"]), look.shirt, int(limb * 1.2), _AA, _SHIFT)
            cv2.line(img, _fx(tor[2]), _fx(tor[3]), _shade(look.trousers, 1.0), int(limb * 1.2), _AA, _SHIFT)
        items.append((d_t, torso))
        capsule("neck", "head_base", _shade(look.skin, 0.9), int(limb * 1.1), bias=0.005)
        self._head(items, img, joints, uv, dp)
        for _, draw in sorted(items, key=lambda x: -x[0]):
            draw()

    def _hand(self, items, img, uv, dp, s: str, limb: int) -> None:
        skin = self.look.skin
        w, tip = uv[f"{s}_wrist"], uv[f"{s}_hand_tip"]
        palm = w + 0.45 * (tip - w)
        d = dp[f"{s}_hand_tip"] - 0.06
        direction = tip - w
        thumb = w + 0.35 * direction + np.array([-direction[1], direction[0]]) * (0.35 if s == "r" else -0.35)

        def draw():
            cv2.circle(img, _fx(palm), int(round(0.62 * limb * _ONE)), skin, -1, _AA, _SHIFT)
            cv2.line(img, _fx(palm), _fx(tip), skin, max(2, int(limb * 0.8)), _AA, _SHIFT)
            cv2.line(img, _fx(w), _fx(thumb), _shade(skin, 0.95), max(2, int(limb * 0.4)), _AA, _SHIFT)
        items.append((d, draw))

    def _head(self, items, img, joints, uv, dp) -> None:
        look, cam = self.look, self.cam
        k = look.body.scale
        r = look.body.head * k
        head, hr = joints["head"], joints["head_rot"]
        local = {
            "face": (0.0, 0.08, 0.05), "hair": (0.0, -0.16, -0.12), "up": (0.0, -1.0, 0.0),
            "r_eye": (-0.36, -0.08, 0.92), "l_eye": (0.36, -0.08, 0.92),
            "r_brow": (-0.36, -0.30, 0.93), "l_brow": (0.36, -0.30, 0.93),
            "nose": (0.0, 0.18, 1.05), "mouth": (0.0, 0.52, 0.86),
            "r_ear": (-1.0, 0.02, 0.0), "l_ear": (1.0, 0.02, 0.0), "back_hair": (0.0, 0.35, -0.45),
        }
        pts = np.stack([head + hr @ (np.array(v) * r) for v in local.values()])
        puv, pdp = cam.project(np.vstack([pts, head[None]]))
        P = dict(zip(local, puv))
        D = dict(zip(local, pdp))
        c_uv, c_d = puv[-1], pdp[-1]
        ppm = cam.focal / c_d
        rad = r * ppm
        up = P["up"] - c_uv
        angle = float(np.degrees(np.arctan2(up[0], -up[1])))
        facing = lambda n: D[n] < c_d - 0.25 * r  # noqa: E731  (feature on the camera side of the head)
        skin, hair = look.skin, look.hair

        def ell(centre, ax, colour, ang=angle):
            cv2.ellipse(img, _fx(centre), (int(ax[0] * _ONE), int(ax[1] * _ONE)), ang, 0, 360, colour, -1, _AA, _SHIFT)

        if look.long_hair:
            items.append((c_d + 0.08, lambda: ell(P["back_hair"], (rad * 1.15, rad * 1.55), hair)))

        def draw():
            for s in SIDES:  # ears first: the face covers the near one when the head turns far
                ell(P[f"{s}_ear"], (rad * 0.22, rad * 0.32), _shade(skin, 0.9))
            ell(P["hair"], (rad * 1.02, rad * 1.08), hair)
            ell(P["face"], (rad * 0.9, rad * 1.08), skin)
            thin = max(1, int(rad * 0.07))
            for s in SIDES:
                if facing(f"{s}_eye"):
                    ell(P[f"{s}_eye"], (rad * 0.2, rad * 0.12), (245, 245, 245))
                    cv2.circle(img, _fx(P[f"{s}_eye"]), int(rad * 0.09 * _ONE), (40, 30, 30), -1, _AA, _SHIFT)
                if facing(f"{s}_brow"):
                    e = P[f"{s}_brow"]
                    dx = np.array([rad * 0.2, 0.0])
                    cv2.line(img, _fx(e - dx), _fx(e + dx), _shade(hair, 0.9), thin, _AA, _SHIFT)
            if facing("nose"):
                ell(P["nose"], (rad * 0.12, rad * 0.16), _shade(skin, 0.78))
            if facing("mouth"):
                ell(P["mouth"], (rad * 0.28, rad * 0.08), (70, 60, 170))
        items.append((c_d, draw))

    # ---------------------------------------------------------------- frame
    def render(self, joints: dict[str, np.ndarray], t: float) -> np.ndarray:
        """One BGR frame [H, W, 3] uint8 at time ``t`` (seconds) for the given joints."""
        look = self.look
        img = self.background.copy()
        self.draw_person(img, joints)
        gain = 1.0 + look.light_amplitude * np.sin(2 * np.pi * t / look.light_period + look.light_phase)
        if gain != 1.0 or look.brightness != 0.0:
            img = cv2.convertScaleAbs(img, alpha=gain, beta=look.brightness)
        if self._noise_bank:
            pos, neg = self._noise_bank[int(self.rng.integers(_NOISE_BANK))]
            flip = int(self.rng.integers(4)) - 2  # -2: as is; -1, 0, 1: cv2.flip codes
            if flip > -2:
                pos, neg = cv2.flip(pos, flip), cv2.flip(neg, flip)
            img = cv2.subtract(cv2.add(img, pos), neg)
        return img


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float, size: tuple[int, int]) -> int:
    """Encode BGR frames to an MP4 (OpenCV ``mp4v``) atomically; returns the number of frames.

    The video is written to a temporary file in the target folder and renamed into place, so an
    interrupted run never leaves a half-written video under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    n = 0
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*FOURCC), float(fps), tuple(int(v) for v in size))
        if not writer.isOpened():
            raise OSError(f"cannot open a video writer for {path}")
        try:
            for frame in frames:
                writer.write(frame)
                n += 1
        finally:
            writer.release()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
