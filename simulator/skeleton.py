"""A seated person as a simple 3-D skeleton: body proportions + per-frame controls -> joint positions.

Coordinates are metres in the *person frame*: origin at the mid-hip, ``x`` towards the image right
when the person faces the camera (so the person's own **left** side is ``+x``), ``y`` down, ``z``
towards the camera. :mod:`simulator.camera` projects these points to pixels.

The person is driven by *controls*, one value (or vector) per frame, written by the idle behaviour
and the motion programs (:mod:`simulator.motions`):

==================  ======  ====================================================================
control             shape   meaning
==================  ======  ====================================================================
sway                [F]     upper-body roll about the hips (rad, + = towards the person's left)
lean                [F]     upper-body pitch (rad, + = forward)
breath              [F]     torso stretch (fraction of torso length)
shrug               [F]     shoulders raised (m, + = up)
head_pitch          [F]     rad, + = chin down (nodding)
head_yaw            [F]     rad, + = face turns to the person's left (image right)
head_roll           [F]     rad, + = head tilts towards the person's left shoulder
{s}_hand_w          [F]     0 = hand at rest on the thigh, 1 = hand at its anchor (s = r | l)
{s}_hand_anchor     [F]     object: anchor name (see :data:`ANCHORS`) or "" for rest
{s}_hand_off        [F, 3]  offset added to the anchor point (m, person frame)
{s}_rest_off        [F, 3]  offset of the resting hand on the thigh (idle drift, patting)
{s}_pole            [F, 3]  direction the elbow bends towards (2-link IK pole)
{s}_knee_lift       [F]     knee and lower leg raised (m, + = up; heel lifting)
{s}_knee_spread     [F]     knee moved outwards (m)
{s}_foot_fwd        [F]     foot slid forwards (m)
==================  ======  ====================================================================

Two-link arm inverse kinematics (shoulder S, wrist target W, upper arm a, forearm b, d = |W - S|
clamped to [|a - b| + eps, a + b - eps]): the elbow lies at angle alpha from the S->W axis with
``cos(alpha) = (a^2 + d^2 - b^2) / (2 a d)`` (law of cosines), in the plane spanned by the axis and
the pole direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Body", "ANCHORS", "SIDES", "CONTROL_NAMES", "new_controls", "rot_x", "rot_y", "rot_z", "skeleton_at",
           "arm_ik"]

SIDES = ("r", "l")
_SIGN = {"r": -1.0, "l": 1.0}  # x of the person's right side is negative (image left)

ANCHORS = ("nose", "face", "forehead", "hindbrain", "chest", "cross", "hip", "shoulder", "wave", "thigh")
"""Where a hand can be sent. Side-specific anchors (``cross``, ``hip``, ``shoulder``, ``wave``,
``thigh``, ``face``, ``hindbrain``) are taken on the hand's own side (``cross``: the opposite upper arm)."""

_SCALAR_CONTROLS = ("sway", "lean", "breath", "shrug", "head_pitch", "head_yaw", "head_roll")
_SIDE_SCALARS = ("hand_w", "knee_lift", "knee_spread", "foot_fwd")
_SIDE_VECTORS = ("hand_off", "rest_off", "pole")
CONTROL_NAMES: tuple[str, ...] = (
    _SCALAR_CONTROLS
    + tuple(f"{s}_{n}" for s in SIDES for n in _SIDE_SCALARS)
    + tuple(f"{s}_{n}" for s in SIDES for n in _SIDE_VECTORS)
    + tuple(f"{s}_hand_anchor" for s in SIDES)
)


@dataclass(frozen=True)
class Body:
    """Body proportions (metres). ``scale`` multiplies everything; ``head`` is the head radius.

    Defaults are an adult of average build; :func:`simulator.appearance.sample_look` draws
    children (relatively larger heads, shorter limbs) to adults.
    """

    scale: float = 1.0
    head: float = 0.105
    neck: float = 0.09
    torso: float = 0.50
    shoulder_half: float = 0.19
    hip_half: float = 0.15
    upper_arm: float = 0.29
    forearm: float = 0.26
    hand: float = 0.085
    thigh: float = 0.44
    shin: float = 0.44
    foot: float = 0.22
    limb: float = 0.075  # limb (capsule) thickness
    torso_depth: float = 0.10


def new_controls(num_frames: int) -> dict[str, np.ndarray]:
    """Neutral controls for ``num_frames`` frames (sitting upright, hands resting on the thighs)."""
    c: dict[str, np.ndarray] = {}
    for n in _SCALAR_CONTROLS:
        c[n] = np.zeros(num_frames)
    for s in SIDES:
        for n in _SIDE_SCALARS:
            c[f"{s}_{n}"] = np.zeros(num_frames)
        c[f"{s}_hand_off"] = np.zeros((num_frames, 3))
        c[f"{s}_rest_off"] = np.zeros((num_frames, 3))
        c[f"{s}_pole"] = np.tile(np.array([_SIGN[s] * 0.6, 0.3, -1.0]), (num_frames, 1))
        c[f"{s}_hand_anchor"] = np.full(num_frames, "", dtype=object)
    return c


def rot_x(a: float) -> np.ndarray:
    """Rotation about x (pitch); + tips the -y (up) axis towards +z (the camera): leaning forward, chin down."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def rot_y(a: float) -> np.ndarray:
    """Rotation about the vertical axis (yaw); + turns the +z (facing) axis towards +x."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a: float) -> np.ndarray:
    """Rotation in the image plane (roll); + turns the -y (up) axis towards +x."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def arm_ik(shoulder: np.ndarray, target: np.ndarray, a: float, b: float, pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elbow and wrist for a 2-link arm reaching ``target`` (module docstring); the wrist is clamped
    to the reachable shell."""
    axis = target - shoulder
    d = float(np.linalg.norm(axis))
    u = axis / d if d > 1e-9 else np.array([0.0, 1.0, 0.0])
    d = float(np.clip(d, abs(a - b) + 1e-3, a + b - 1e-3))
    wrist = shoulder + u * d
    v = pole - np.dot(pole, u) * u
    nv = float(np.linalg.norm(v))
    if nv < 1e-9:  # pole along the arm: any perpendicular
        v = np.cross(u, [0.0, 0.0, 1.0])
        nv = float(np.linalg.norm(v)) or 1.0
    v = v / nv
    cos_alpha = np.clip((a * a + d * d - b * b) / (2 * a * d), -1.0, 1.0)
    alpha = np.arccos(cos_alpha)
    elbow = shoulder + a * (np.cos(alpha) * u + np.sin(alpha) * v)
    return elbow, wrist


def skeleton_at(body: Body, c: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Joint positions (person frame, metres) at frame ``i``.

    Returns a dict with 3-vectors ``mid_hip, neck, head_base, head, {s}_shoulder, {s}_elbow,
    {s}_wrist, {s}_hand_tip, {s}_hip, {s}_knee, {s}_ankle, {s}_heel, {s}_toe`` and the 3x3 head
    rotation ``head_rot`` (columns: head x, y, z axes in the person frame) and ``torso_rot``.
    """
    k = body.scale
    torso_rot = rot_z(c["sway"][i]) @ rot_x(c["lean"][i])
    p: dict[str, np.ndarray] = {"mid_hip": np.zeros(3), "torso_rot": torso_rot}
    neck = torso_rot @ np.array([0.0, -k * body.torso * (1.0 + c["breath"][i]), 0.0])
    p["neck"] = neck
    shrug = c["shrug"][i]
    for s in SIDES:
        p[f"{s}_shoulder"] = neck + torso_rot @ np.array([_SIGN[s] * k * body.shoulder_half, 0.02 * k - shrug, -0.01])
        p[f"{s}_hip"] = np.array([_SIGN[s] * k * body.hip_half, 0.0, 0.0])
    head_base = neck + torso_rot @ np.array([0.0, -k * body.neck - 0.5 * shrug, 0.0])
    head_rot = torso_rot @ rot_y(c["head_yaw"][i]) @ rot_x(c["head_pitch"][i]) @ rot_z(c["head_roll"][i])
    p["head_base"] = head_base
    p["head_rot"] = head_rot
    p["head"] = head_base + head_rot @ np.array([0.0, -k * body.head * 1.05, 0.015 * k])
    # legs: thigh forward (z), shin down (y), foot forward
    for s in SIDES:
        sg = _SIGN[s]
        lift = c[f"{s}_knee_lift"][i]
        spread = c[f"{s}_knee_spread"][i]
        fwd = c[f"{s}_foot_fwd"][i]
        hip = p[f"{s}_hip"]
        knee = hip + np.array([sg * (0.03 * k + spread), -lift, k * body.thigh])
        ankle = knee + np.array([sg * 0.01 * k - 0.3 * sg * spread, k * body.shin - 0.15 * lift, fwd])
        # keep the shin length when the foot slides forward
        shin = ankle - knee
        ankle = knee + shin / np.linalg.norm(shin) * k * body.shin
        p[f"{s}_knee"], p[f"{s}_ankle"] = knee, ankle
        p[f"{s}_heel"] = ankle + np.array([0.0, 0.04 * k, -0.05 * k])
        p[f"{s}_toe"] = ankle + np.array([sg * 0.01 * k, 0.05 * k, k * body.foot * 0.8])
    anchors = _anchor_points(body, p)
    for s in SIDES:
        rest = anchors[f"{s}_thigh"] + c[f"{s}_rest_off"][i]
        name = c[f"{s}_hand_anchor"][i]
        w = float(c[f"{s}_hand_w"][i])
        if name and w > 0.0:
            key = f"{s}_{name}" if f"{s}_{name}" in anchors else name
            target = (1.0 - w) * rest + w * (anchors[key] + c[f"{s}_hand_off"][i])
        else:
            target = rest
        # the wrist is a hand-length short of the target so that the *hand* reaches it
        shoulder = p[f"{s}_shoulder"]
        to = target - shoulder
        dist = float(np.linalg.norm(to))
        wrist_target = shoulder + to * max(dist - 0.5 * k * body.hand, 1e-3) / max(dist, 1e-9)
        elbow, wrist = arm_ik(shoulder, wrist_target, k * body.upper_arm, k * body.forearm, c[f"{s}_pole"][i])
        direction = wrist - elbow
        direction /= max(np.linalg.norm(direction), 1e-9)
        p[f"{s}_elbow"], p[f"{s}_wrist"] = elbow, wrist
        p[f"{s}_hand_tip"] = wrist + direction * k * body.hand
    return p


def _anchor_points(body: Body, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Anchor points of :data:`ANCHORS` for the current body pose."""
    k = body.scale
    hr, tr = p["head_rot"], p["torso_rot"]
    head = p["head"]
    out = {
        "nose": head + hr @ np.array([0.0, 0.02 * k, k * body.head * 1.05]),
        "forehead": head + hr @ np.array([0.0, -0.06 * k, k * body.head * 0.95]),
        "chest": p["neck"] + tr @ np.array([0.0, 0.15 * k, 0.12 * k]),
    }
    for s in SIDES:
        sg = _SIGN[s]
        out[f"{s}_face"] = head + hr @ np.array([sg * 0.035 * k, 0.0, k * body.head * 1.1])
        out[f"{s}_hindbrain"] = head + hr @ np.array([sg * 0.03 * k, -0.03 * k, -k * body.head * 1.05])
        other = "l" if s == "r" else "r"
        out[f"{s}_cross"] = p[f"{other}_shoulder"] + tr @ np.array([-sg * 0.02 * k, 0.17 * k, 0.13 * k])
        out[f"{s}_hip"] = p[f"{s}_hip"] + tr @ np.array([sg * 0.06 * k, -0.10 * k, 0.02 * k])
        out[f"{s}_shoulder"] = p[f"{s}_shoulder"]
        out[f"{s}_wave"] = p[f"{s}_shoulder"] + tr @ np.array([sg * 0.22 * k, -0.42 * k, 0.12 * k])
        out[f"{s}_thigh"] = (
            p[f"{s}_hip"] + 0.62 * (p[f"{s}_knee"] - p[f"{s}_hip"]) + np.array([-sg * 0.02 * k, -0.07 * k, 0.0])
        )
    return out
