"""Per-participant look: body proportions, colours, room, camera placement, lighting and sensor noise.

:func:`sample_look` draws one :class:`Look` from the ranges of :class:`LookRanges` (uniform within
each range). The acceptance tests sample across these whole ranges and require the pose stage to find
the person in >= 95 % of frames; widen a range only together with that test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from simulator.camera import Camera
from simulator.skeleton import Body

__all__ = ["Look", "LookRanges", "sample_look", "body_for_age", "SKIN_TONES"]

Colour = tuple[int, int, int]  # BGR, as OpenCV draws

SKIN_TONES: tuple[Colour, ...] = (
    (189, 214, 245), (160, 192, 234), (130, 170, 222), (98, 140, 198), (70, 105, 160), (45, 72, 120),
)
"""BGR skin tones from light to dark."""
HAIR_COLOURS: tuple[Colour, ...] = ((20, 20, 25), (25, 45, 80), (40, 80, 140), (90, 150, 200), (60, 60, 70))


@dataclass(frozen=True)
class LookRanges:
    """Uniform ranges (low, high) of the per-participant parameters.

    Attributes
    ----------
    fill : share of the image height covered by the seated person (camera distance / zoom)
    distance : camera distance in metres (perspective strength)
    offset_x, offset_y : framing offset as a fraction of the image width / height
    yaw : body turned relative to the camera (rad, about +-17 degrees)
    pitch : camera looking down (rad, about 14-26 degrees)
    noise_sigma : Gaussian sensor noise (grey levels, per pixel and frame)
    light_amplitude : relative amplitude of a slow global brightness change
    light_period : its period in seconds
    brightness : constant brightness offset (grey levels)
    """

    fill: tuple[float, float] = (0.62, 0.86)
    distance: tuple[float, float] = (2.2, 4.0)
    offset_x: tuple[float, float] = (-0.08, 0.08)
    offset_y: tuple[float, float] = (-0.03, 0.03)
    yaw: tuple[float, float] = (-0.30, 0.30)
    pitch: tuple[float, float] = (0.25, 0.45)
    noise_sigma: tuple[float, float] = (0.0, 6.0)
    light_amplitude: tuple[float, float] = (0.0, 0.08)
    light_period: tuple[float, float] = (3.0, 10.0)
    brightness: tuple[float, float] = (-20.0, 20.0)


@dataclass(frozen=True)
class Look:
    """Everything about a participant's video that does not move (see :class:`LookRanges`)."""

    body: Body
    camera: Camera
    skin: Colour
    hair: Colour
    shirt: Colour
    trousers: Colour
    shoes: Colour
    wall: Colour
    floor: Colour
    chair: Colour
    short_sleeves: bool
    long_hair: bool
    noise_sigma: float
    light_amplitude: float
    light_period: float
    light_phase: float
    brightness: float
    extra: dict = field(default_factory=dict)

    def with_size(self, size: tuple[int, int]) -> "Look":
        return replace(self, camera=replace(self.camera, size=size))


def body_for_age(age: float, scale_jitter: float = 1.0) -> Body:
    """Body proportions for an age in years: children are smaller with relatively larger heads."""
    grown = float(np.clip((age - 5.0) / 13.0, 0.0, 1.0))  # 0 at 5 years, 1 from 18
    scale = (0.62 + 0.38 * grown) * scale_jitter
    head_m = 0.105 * (0.85 + 0.15 * grown)  # a child's head is nearly adult-sized ...
    return Body(scale=scale, head=head_m / scale)  # ... so relative to the body it is larger


def _colour(rng: np.random.Generator, lo: int, hi: int) -> Colour:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))  # type: ignore[return-value]


def _distance(a: Colour, b: Colour) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float)))


def sample_look(
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    age: float | None = None,
    ranges: LookRanges = LookRanges(),
) -> Look:
    """Draw a participant's look. ``size`` is (width, height); ``age`` (years) sets proportions."""
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    if age is None:
        age = float(rng.uniform(5, 52))
    body = body_for_age(age, scale_jitter=float(rng.uniform(0.93, 1.07)))
    camera = Camera(
        size=(int(size[0]), int(size[1])), distance=u(ranges.distance), fill=u(ranges.fill),
        offset=(u(ranges.offset_x), u(ranges.offset_y)), yaw=u(ranges.yaw), pitch=u(ranges.pitch), scale=body.scale,
    )
    wall = _colour(rng, 150, 235)
    floor = _colour(rng, 70, 150)
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    # clothes contrast with the wall and the skin, so the silhouette is never lost in the background
    while True:
        shirt = _colour(rng, 20, 220)
        if _distance(shirt, wall) > 110 and _distance(shirt, skin) > 80:
            break
    while True:
        trousers = _colour(rng, 15, 120)
        if _distance(trousers, floor) > 60:
            break
    return Look(
        body=body, camera=camera, skin=skin, hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        shirt=shirt, trousers=trousers, shoes=_colour(rng, 10, 60), wall=wall, floor=floor,
        chair=_colour(rng, 40, 130), short_sleeves=bool(rng.random() < 0.4), long_hair=bool(rng.random() < 0.4),
        noise_sigma=u(ranges.noise_sigma), light_amplitude=u(ranges.light_amplitude),
        light_period=u(ranges.light_period), light_phase=float(rng.uniform(0, 2 * np.pi)),
        brightness=u(ranges.brightness), extra={"age": age},
    )
