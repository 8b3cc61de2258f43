"""Motion programs: idle behaviour and MA-52 micro-actions as edits of the skeleton's control tracks.

:func:`idle_controls` gives a participant's background behaviour (breathing, slow postural sway,
small head drift, resting hands drifting on the thighs), so that "no micro-action" is never a still
image. Each :class:`ActionProgram` then *plants* one event into frames ``[start, stop)`` of those
tracks, with randomised amplitude, speed and side, and returns what it drew.

Two kinds, as the MA-52 paper contrasts them:

- ``motion``-defined actions are an oscillation (nodding, shaking head, shaking legs, patting legs,
  shrugging, waving, shaking body): the planted track is ``A * env(t) * wave(2 pi f t)``, where
  ``env`` rises and falls over :data:`MOTION_RAMP_S` at the event's ends and ``wave`` is ``sin`` or
  the one-sided ``(1 - cos) / 2``. Frequencies stay within 0.7-1.6 Hz: the recognition windows sample
  every 8th frame (3.75 Hz at 30 fps), and faster oscillations would alias in the sampled frames.
- ``position``-defined actions move to a posture, hold it and return (crossing arms, covering face,
  touching nose, arms akimbo, ...): the planted weight is a smoothstep ramp of
  :data:`POSITION_RAMP_S` up, a hold, and the same ramp down.

The ground-truth label covers the whole event, ramps included. Names and ids come from
:data:`model.taxonomy.MA52`. :data:`PROGRAMS` maps action names to programs; :data:`ACTIONS` lists
them in MA-52 index order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.taxonomy import MA52
from simulator.skeleton import SIDES, new_controls

__all__ = ["ActionProgram", "PROGRAMS", "ACTIONS", "idle_controls", "MOTION_RAMP_S", "POSITION_RAMP_S",
           "DURATION_S", "smoothstep_envelope"]

MOTION_RAMP_S = 0.15
POSITION_RAMP_S = 0.35
DURATION_S = (1.0, 3.0)
"""Event durations are drawn uniformly from this range (seconds)."""

_SIGN = {"r": -1.0, "l": 1.0}
Controls = dict[str, np.ndarray]


@dataclass(frozen=True)
class ActionProgram:
    """One micro-action's motion program.

    Attributes
    ----------
    action : MA-52 action name (``model.taxonomy.MA52.actions``)
    kind : ``"motion"`` (defined by an oscillation) or ``"position"`` (defined by a held posture)
    drives : the control tracks the program plants (skeleton control names, ``{s}`` = side)
    plant : ``plant(controls, start, stop, fps, rng) -> params`` edits the tracks in place and returns
        the drawn parameters (side, amplitude, frequency, ...) and ``"signal"``: the planted track
        over ``[start, stop)`` (for motion-defined actions; the tests correlate it with keypoints)
    """

    action: str
    kind: str
    drives: tuple[str, ...]
    plant: Callable[[Controls, int, int, float, np.random.Generator], dict]

    @property
    def action_id(self) -> int:
        return MA52.index(self.action)

    @property
    def body_part(self) -> str:
        return MA52.body_of(self.action)


def smoothstep_envelope(n: int, ramp: int) -> np.ndarray:
    """[n] weights: smoothstep 0 -> 1 over ``ramp`` frames, hold at 1, back to 0 over the last ``ramp``."""
    ramp = int(max(1, min(ramp, n // 2)))
    x = np.ones(n)
    up = np.linspace(0.0, 1.0, ramp + 1)[1:]
    up = up * up * (3 - 2 * up)
    x[:ramp] = up
    x[n - ramp:] = np.minimum(x[n - ramp:], up[::-1])
    return x


def _time(start: int, stop: int, fps: float) -> np.ndarray:
    return np.arange(stop - start) / fps


def _oscillation(start: int, stop: int, fps: float, amp: float, freq: float, one_sided: bool) -> np.ndarray:
    t = _time(start, stop, fps)
    env = smoothstep_envelope(stop - start, int(round(MOTION_RAMP_S * fps)))
    wave = (1.0 - np.cos(2 * np.pi * freq * t)) / 2.0 if one_sided else np.sin(2 * np.pi * freq * t)
    return amp * env * wave


def _hold(start: int, stop: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Position weight: ramps of POSITION_RAMP_S times a random speed factor in [0.7, 1.4]."""
    return smoothstep_envelope(stop - start, int(round(POSITION_RAMP_S * rng.uniform(0.7, 1.4) * fps)))


def _jitter(rng: np.random.Generator, scale: float = 0.015) -> np.ndarray:
    """A small random offset (m) of a hand's target, so no two held postures are identical."""
    return rng.normal(0.0, scale, 3)


def _side(rng: np.random.Generator) -> str:
    return SIDES[int(rng.integers(2))]


def _sides(rng: np.random.Generator, p_both: float) -> tuple[str, ...]:
    return SIDES if rng.random() < p_both else (_side(rng),)


def _send_hand(c: Controls, s: str, sl: slice, weight: np.ndarray, anchor: str, offset, pole) -> None:
    c[f"{s}_hand_anchor"][sl] = anchor
    c[f"{s}_hand_w"][sl] = weight
    c[f"{s}_hand_off"][sl] = np.asarray(offset, float)
    rest_pole = c[f"{s}_pole"][sl].copy()
    c[f"{s}_pole"][sl] = (1 - weight[:, None]) * rest_pole + weight[:, None] * np.asarray(pole, float)


# ------------------------------------------------------------------------------------------------ programs
def _shaking_body(c, a, b, fps, rng):
    amp, f = rng.uniform(0.09, 0.15), rng.uniform(0.7, 1.3)
    sig = _oscillation(a, b, fps, amp, f, one_sided=False)
    c["sway"][a:b] += sig
    return {"amplitude": amp, "frequency": f, "signal": sig}


def _shrugging(c, a, b, fps, rng):
    amp, f = rng.uniform(0.07, 0.10), rng.uniform(0.7, 1.3)
    sig = _oscillation(a, b, fps, amp, f, one_sided=True)
    c["shrug"][a:b] += sig
    return {"amplitude": amp, "frequency": f, "signal": sig}


def _nodding(c, a, b, fps, rng):
    amp, f = rng.uniform(0.32, 0.52), rng.uniform(0.8, 1.5)
    sig = _oscillation(a, b, fps, amp, f, one_sided=True)
    c["head_pitch"][a:b] += sig
    return {"amplitude": amp, "frequency": f, "signal": sig}


def _shaking_head(c, a, b, fps, rng):
    amp, f = rng.uniform(0.38, 0.6), rng.uniform(0.7, 1.3)
    sig = _oscillation(a, b, fps, amp, f, one_sided=False)
    c["head_yaw"][a:b] += sig
    return {"amplitude": amp, "frequency": f, "signal": sig}


def _turning_head(c, a, b, fps, rng):
    s = _side(rng)
    amp = rng.uniform(0.7, 1.0)
    w = _hold(a, b, fps, rng)
    c["head_yaw"][a:b] += _SIGN[s] * amp * w
    return {"side": s, "amplitude": amp, "signal": _SIGN[s] * amp * w}


def _waving(c, a, b, fps, rng):
    s = _side(rng)
    amp, f = rng.uniform(0.09, 0.14), rng.uniform(0.8, 1.5)
    w = _hold(a, b, fps, rng)
    sig = _SIGN[s] * amp * w * np.sin(2 * np.pi * f * _time(a, b, fps))
    offset = np.zeros((b - a, 3))
    offset[:, 0] = sig
    _send_hand(c, s, slice(a, b), w, "wave", offset, (_SIGN[s] * 1.0, 0.8, -0.2))
    return {"side": s, "amplitude": amp, "frequency": f, "signal": sig}


def _stretching_arms(c, a, b, fps, rng):
    sides = _sides(rng, 0.5)
    height = rng.uniform(-0.25, 0.05)
    w = _hold(a, b, fps, rng)
    for s in sides:
        _send_hand(c, s, slice(a, b), w, "shoulder", (_SIGN[s] * 0.62, height, 0.12), (0.0, 1.0, -0.3))
    return {"sides": "".join(sides), "height": height, "signal": w}


def _shaking_legs(c, a, b, fps, rng):
    sides = _sides(rng, 0.5)
    amp, f = rng.uniform(0.06, 0.09), rng.uniform(0.9, 1.6)
    sig = _oscillation(a, b, fps, amp, f, one_sided=True)
    for s in sides:
        c[f"{s}_knee_lift"][a:b] += sig
    return {"sides": "".join(sides), "amplitude": amp, "frequency": f, "signal": sig}


def _spread_legs(c, a, b, fps, rng):
    amp = rng.uniform(0.11, 0.17)
    w = _hold(a, b, fps, rng)
    for s in SIDES:
        c[f"{s}_knee_spread"][a:b] += amp * w
    return {"amplitude": amp, "signal": amp * w}


def _crossing_arms(c, a, b, fps, rng):
    w = _hold(a, b, fps, rng)
    for s in SIDES:
        _send_hand(c, s, slice(a, b), w, "cross", _jitter(rng), (_SIGN[s] * 0.7, 1.0, -0.1))
    return {"signal": w}


def _arms_akimbo(c, a, b, fps, rng):
    w = _hold(a, b, fps, rng)
    sides = _sides(rng, 0.75)
    for s in sides:
        _send_hand(c, s, slice(a, b), w, "hip", _jitter(rng), (_SIGN[s] * 1.0, -0.1, -0.5))
    return {"sides": "".join(sides), "signal": w}


def _touching_nose(c, a, b, fps, rng):
    s = _side(rng)
    w = _hold(a, b, fps, rng)
    _send_hand(c, s, slice(a, b), w, "nose", (-_SIGN[s] * 0.01, 0.045, 0.035), (_SIGN[s] * 0.4, 1.0, 0.1))
    return {"side": s, "signal": w}


def _covering_face(c, a, b, fps, rng):
    w = _hold(a, b, fps, rng)
    for s in SIDES:
        _send_hand(c, s, slice(a, b), w, "face", np.array([0.0, 0.0, 0.03]) + _jitter(rng, 0.01), (_SIGN[s] * 0.6, 1.0, 0.0))
    return {"signal": w}


def _touching_hindbrain(c, a, b, fps, rng):
    s = _side(rng)
    w = _hold(a, b, fps, rng)
    scratch = np.zeros((b - a, 3))
    scratch[:, 1] = 0.015 * np.sin(2 * np.pi * rng.uniform(1.5, 2.5) * _time(a, b, fps)) * w
    _send_hand(c, s, slice(a, b), w, "hindbrain", scratch, (_SIGN[s] * 1.0, -0.8, -0.2))
    return {"side": s, "signal": w}


def _patting_legs(c, a, b, fps, rng):
    sides = _sides(rng, 0.3)
    amp, f = rng.uniform(0.08, 0.13), rng.uniform(0.8, 1.5)
    sig = _oscillation(a, b, fps, amp, f, one_sided=True)
    for s in sides:
        c[f"{s}_rest_off"][a:b, 1] -= sig
    return {"sides": "".join(sides), "amplitude": amp, "frequency": f, "signal": sig}


_ALL = (
    ActionProgram("shaking body", "motion", ("sway",), _shaking_body),
    ActionProgram("shrugging", "motion", ("shrug",), _shrugging),
    ActionProgram("nodding", "motion", ("head_pitch",), _nodding),
    ActionProgram("shaking head", "motion", ("head_yaw",), _shaking_head),
    ActionProgram("turning head", "position", ("head_yaw",), _turning_head),
    ActionProgram("waving", "motion", ("{s}_hand_off", "{s}_hand_w"), _waving),
    ActionProgram("stretching arms", "position", ("{s}_hand_w",), _stretching_arms),
    ActionProgram("shaking legs", "motion", ("{s}_knee_lift",), _shaking_legs),
    ActionProgram("spread legs", "position", ("{s}_knee_spread",), _spread_legs),
    ActionProgram("crossing arms", "position", ("{s}_hand_w",), _crossing_arms),
    ActionProgram("arms akimbo", "position", ("{s}_hand_w",), _arms_akimbo),
    ActionProgram("touching nose", "position", ("{s}_hand_w",), _touching_nose),
    ActionProgram("covering face", "position", ("{s}_hand_w",), _covering_face),
    ActionProgram("scratching or touching hindbrain", "position", ("{s}_hand_w",), _touching_hindbrain),
    ActionProgram("patting legs", "motion", ("{s}_rest_off",), _patting_legs),
)

PROGRAMS: dict[str, ActionProgram] = {p.action: p for p in sorted(_ALL, key=lambda p: MA52.index(p.action))}
"""Action name -> program, in MA-52 index order."""
ACTIONS: tuple[str, ...] = tuple(PROGRAMS)
"""The simulated MA-52 action names, in MA-52 index order."""


# ------------------------------------------------------------------------------------------------ idle
def _slow_noise(n: int, fps: float, rng: np.random.Generator, amp: float, f_lo: float, f_hi: float, k: int = 3) -> np.ndarray:
    """Sum of ``k`` random slow sinusoids (frequencies in [f_lo, f_hi] Hz), peak about ``amp``."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(k):
        out += np.sin(2 * np.pi * rng.uniform(f_lo, f_hi) * t + rng.uniform(0, 2 * np.pi))
    return amp * out / np.sqrt(k)


def idle_controls(num_frames: int, fps: float, rng: np.random.Generator) -> Controls:
    """Controls for a participant doing no micro-action: breathing, slow sway, head and hand drift.

    Per participant: breathing at 0.2-0.35 Hz (torso +-1 %, shoulders +-3 mm), upper-body sway and
    lean of about 1-2 degrees below 0.15 Hz, head pitch/yaw/roll drift of about 2-3 degrees below
    0.2 Hz plus a constant head tilt, resting hands drifting by about 1 cm.
    """
    n = num_frames
    c = new_controls(n)
    t = np.arange(n) / fps
    breath_f = rng.uniform(0.2, 0.35)
    phase = rng.uniform(0, 2 * np.pi)
    breathing = np.sin(2 * np.pi * breath_f * t + phase)
    c["breath"] += 0.01 * breathing
    c["shrug"] += 0.003 * breathing
    c["sway"] += _slow_noise(n, fps, rng, rng.uniform(0.01, 0.03), 0.03, 0.15)
    c["lean"] += rng.uniform(-0.03, 0.08) + _slow_noise(n, fps, rng, 0.015, 0.03, 0.12)
    c["head_pitch"] += rng.uniform(-0.05, 0.1) + _slow_noise(n, fps, rng, rng.uniform(0.02, 0.05), 0.05, 0.2)
    c["head_yaw"] += rng.uniform(-0.1, 0.1) + _slow_noise(n, fps, rng, rng.uniform(0.02, 0.05), 0.05, 0.2)
    c["head_roll"] += rng.uniform(-0.06, 0.06) + _slow_noise(n, fps, rng, 0.02, 0.05, 0.2)
    for s in SIDES:
        for axis in range(3):
            c[f"{s}_rest_off"][:, axis] += _slow_noise(n, fps, rng, 0.008, 0.05, 0.2, k=2)
        c[f"{s}_knee_spread"] += rng.uniform(-0.02, 0.04)
    return c
