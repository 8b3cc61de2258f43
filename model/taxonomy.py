"""The MA-52 micro-action label space and the body-entity layouts used by Micro-DualNet.

Everything here is encoded in the package (the benchmark's ``taxonomy.csv`` is the source of truth,
checked by ``tests/test_taxonomy.py`` when ``../shared/data/ma52`` is present) so that nothing reads
``../shared`` at run time.

Index order is the benchmark's label order (``label_name.txt``): action index 0 is "shaking body",
51 is "scratching feet". The annotation codes (``A1`` ... ``G4``) are *not* in index order within a
body part; use :meth:`Taxonomy.by_code` rather than sorting codes.

Note: the annotation manual's descriptions of "tilting head" (B4) and "bowing head" (B5) appear
swapped; the names and indices are right and are kept as the benchmark publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# (action index, code, name, body-part index, description)
_MA52_ROWS: tuple[tuple[int, str, str, int, str], ...] = (
    (0, 'A1', 'shaking body', 0, 'The movement of the upper body from side to side'),
    (1, 'A3', 'sitting straightly', 0, 'The dynamic process of straightening the back, without involving the maintenance of an upright sitting'),
    (2, 'A4', 'shrugging', 0, 'Shrugging or moving the shoulders back and forth, indicating movements involving only the shoulders'),
    (3, 'A2', 'turning around', 0, 'The movement that causes changes in the facing angle'),
    (4, 'A5', 'rising up', 0, 'The preparatory movements before standing up from a seated position'),
    (5, 'B5', 'bowing head', 1, 'Tilt the head toward the shoulder, distinguishing between tilting and turning'),
    (6, 'B6', 'head up', 1, 'Raise the head slowly or abruptly, typically as a single motion'),
    (7, 'B4', 'tilting head', 1, 'Lower the head slowly or abruptly, typically as a single motion'),
    (8, 'B3', 'turning head', 1, 'Turn the head backward or sideways, typically as a single motion'),
    (9, 'B1', 'nodding', 1, 'The movement of continuous up-and-down head'),
    (10, 'B2', 'shaking head', 1, 'The movement of continuous turn of the head left and right'),
    (11, 'C6', 'scratching arms', 2, 'The movement of scratching the other arm with one hand'),
    (12, 'C8', 'playing objects', 2, 'The movement of playing with or adjusting objects in hand.'),
    (13, 'C9', 'putting hands together', 2, 'The movement of bringing both hands closer together until palms together'),
    (14, 'C13', 'rubbing hands', 2, 'The movement of touching and rubbing the hands together'),
    (15, 'C11', 'pointing oneself', 2, 'The movement of the hand that indicates direction and self-reference'),
    (16, 'C12', 'clenching fist', 2, 'The movement of bending the fingers into a fist, including partial clenching of the fingers'),
    (17, 'C4', 'stretching arms', 2, 'The movement of raising or extending the arm forward or sideways'),
    (18, 'C10', 'retracting arms', 2, 'The movement of extending and retracting the arm'),
    (19, 'C5', 'waving', 2, 'The movement of waving one’s hand or arm, often accompanied by shaking one’s head'),
    (20, 'C7', 'spreading hands', 2, 'The movement of holding one’s hand open with the palm facing up'),
    (21, 'C3', 'hands touching fingers', 2, 'The movement of changing from having the fingers of both hands uncrossed to interlaced'),
    (22, 'C2', 'other finger movements', 2, 'Excluding finger movements as defined within the upper limb'),
    (23, 'C1', 'illustrative gestures', 2, 'The illustrative gestures made with either the left arm or the right arm'),
    (24, 'D3', 'shaking legs', 3, 'The movement of shaking the leg up and down, either continuously or briefly'),
    (25, 'D7', 'curling legs', 3, 'The movement of sitting with one leg crossed over the other'),
    (26, 'D6', 'spread legs', 3, 'The movement of increasing the distance between the knees'),
    (27, 'D5', 'closing legs', 3, 'The movement of moving the legs from apart to together'),
    (28, 'D8', 'crossing legs', 3, 'The movement of legs gradually turning from crossing to crossing'),
    (29, 'D4', 'stretching feet', 3, 'The movement of extending the foot forward or sideways, often accompanied by leaning forward or turning'),
    (30, 'D2', 'retracting feet', 3, 'Retract the foot towards the body. If both feet retract into a tiptoe position, it is considered tiptoe'),
    (31, 'D1', 'tiptoe', 3, 'Place the foot sideways or rest the heel on a stool with the toe touching the ground'),
    (32, 'E2', 'scratching or touching neck', 4, 'The movement of bringing the hand close to and touching the neck area'),
    (33, 'E1', 'scratching or touching chest', 4, 'The movement of bringing the hand close to and touching the front of the upper body'),
    (34, 'E3', 'scratching or touching back', 4, 'The movement of bringing the hand close to and touching the back of the upper body'),
    (35, 'E6', 'scratching or touching shoulder', 4, 'The movement of bringing the hand close to or touching the shoulder area'),
    (36, 'E4', 'arms akimbo', 4, 'The movement of placing one or both hands on the hips'),
    (37, 'E5', 'crossing arms', 4, 'The movement of crossing one’s arms over one’s chest'),
    (38, 'F3', 'playing or tidying hair', 5, 'Hand movements that adjust hair on the sides or top of the head, including women arranging their hanging hair'),
    (39, 'F4', 'scratching or touching hindbrain', 5, 'Touch the back of the head or the hair on the back of the head'),
    (40, 'F7', 'scratching or touching forehead', 5, 'The movement of scratching or touching the forehead'),
    (41, 'F2', 'scratching or touching face', 5, 'The movement of touching the cheek area, excluding the nose, forehead, and chin'),
    (42, 'F6', 'rubbing eyes', 5, 'The movement of bringing the hand close to and touching the area around the eyes'),
    (43, 'F1', 'touching nose', 5, 'The movement of bringing the hand close to and touching the nose area'),
    (44, 'F8', 'touching ears', 5, 'The movement of bringing the hand close to and touching the ear, or touching and rubbing the ear'),
    (45, 'F10', 'covering face', 5, 'The movement of covering the face region, excluding the mouth, with one or both hands'),
    (46, 'F9', 'covering mouth', 5, 'The movement of covering the mouth with the hand'),
    (47, 'F5', 'pushing glasses', 5, 'The movement of bringing the hand close to and touching the glasses'),
    (48, 'G2', 'patting legs', 6, 'Move one hand close to and touch the leg in a dynamic process'),
    (49, 'G1', 'touching legs', 6, 'The movement of touching and rubbing the leg with one hand'),
    (50, 'G3', 'scratching legs', 6, 'Scratch the calf area with the hand, excluding the ankle'),
    (51, 'G4', 'scratching feet', 6, 'The movement of scratching the foot with the hand, excluding the legs'),
)

_MA52_BODY_PARTS = ("body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand")
_MA52_BODY_CODES = ("A", "B", "C", "D", "E", "F", "G")


@dataclass(frozen=True)
class Taxonomy:
    """A closed set of actions, each belonging to one coarse body part.

    Attributes
    ----------
    name : str
        Data-set name, e.g. ``"MA-52"``.
    actions : tuple of str
        Action names in label-index order.
    codes : tuple of str
        Annotation code of each action (same order as ``actions``).
    descriptions : tuple of str
        Annotation-manual description of each action.
    body_parts : tuple of str
        Coarse body-part names in body-index order.
    body_codes : tuple of str
        One-letter code of each body part.
    action_to_body : numpy.ndarray of int64, shape [num_actions]
        Body-part index of each action (read-only).
    """

    name: str
    actions: tuple[str, ...]
    codes: tuple[str, ...]
    descriptions: tuple[str, ...]
    body_parts: tuple[str, ...]
    body_codes: tuple[str, ...]
    action_to_body: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        n = len(self.actions)
        if not (len(self.codes) == len(self.descriptions) == len(self.action_to_body) == n):
            raise ValueError("actions, codes, descriptions and action_to_body must have equal length")
        if len(set(self.actions)) != n or len(set(self.codes)) != n:
            raise ValueError("action names and codes must be unique")
        self.action_to_body.setflags(write=False)

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    @property
    def num_body_parts(self) -> int:
        return len(self.body_parts)

    def index(self, name: str) -> int:
        """Label index of an action name (case- and surrounding-space-insensitive)."""
        key = name.strip().lower()
        for i, a in enumerate(self.actions):
            if a == key:
                return i
        raise KeyError(f"unknown {self.name} action {name!r}; see {type(self).__name__}.actions")

    def by_code(self, code: str) -> int:
        """Label index of an annotation code such as ``"B1"``."""
        key = code.strip().upper()
        try:
            return self.codes.index(key)
        except ValueError:
            raise KeyError(f"unknown {self.name} action code {code!r}") from None

    def body_of(self, action: int | str) -> str:
        """Body-part name of an action given by index or name."""
        i = self.index(action) if isinstance(action, str) else int(action)
        return self.body_parts[int(self.action_to_body[i])]

    def describe(self, action: int | str) -> str:
        i = self.index(action) if isinstance(action, str) else int(action)
        return self.descriptions[i]

    def actions_of_body(self, body: int | str) -> list[int]:
        """Action indices belonging to a body part given by index or name."""
        b = self.body_parts.index(body) if isinstance(body, str) else int(body)
        return [int(i) for i in np.flatnonzero(self.action_to_body == b)]


MA52 = Taxonomy(
    name="MA-52",
    actions=tuple(r[2] for r in _MA52_ROWS),
    codes=tuple(r[1] for r in _MA52_ROWS),
    descriptions=tuple(r[4] for r in _MA52_ROWS),
    body_parts=_MA52_BODY_PARTS,
    body_codes=_MA52_BODY_CODES,
    action_to_body=np.array([r[3] for r in _MA52_ROWS], dtype=np.int64),
)
"""The 52 MA-52 actions and 7 body parts, in the benchmark's index order."""


# --------------------------------------------------------------------------------------------------
# Keypoints: OpenPose BODY_25 plus optional extra points carried from BlazePose.
# --------------------------------------------------------------------------------------------------

BODY25_JOINTS: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye",
    "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
"""OpenPose BODY_25 joint names in index order. Left/right are the person's own sides."""

EXTRA_POINTS: tuple[str, ...] = (
    "LPinky", "RPinky", "LIndex", "RIndex", "LThumb", "RThumb", "MouthL", "MouthR",
)
"""Extra points kept beside BODY_25 (BlazePose landmarks 17-22 and 9-10, in that order).

In a combined keypoint array of ``J = 25 + 8 = 33`` points, extra point ``e`` has index ``25 + e``.
OpenPose input has no extra points; they are then absent (zero confidence) and entity layouts fall
back to BODY_25 joints (see :class:`Entity`).
"""

NUM_BODY25 = len(BODY25_JOINTS)
NUM_EXTRA = len(EXTRA_POINTS)
NUM_KEYPOINTS = NUM_BODY25 + NUM_EXTRA

KEYPOINT_NAMES: tuple[str, ...] = BODY25_JOINTS + EXTRA_POINTS


def _flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    def mirror(n: str) -> str:
        if n.startswith("L") and n[1:2].isupper():
            return "R" + n[1:]
        if n.startswith("R") and n[1:2].isupper():
            return "L" + n[1:]
        if n.endswith("L") and n.startswith("Mouth"):
            return n[:-1] + "R"
        if n.endswith("R") and n.startswith("Mouth"):
            return n[:-1] + "L"
        return n

    return tuple(names.index(mirror(n)) for n in names)


KEYPOINT_FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation(KEYPOINT_NAMES)
"""Index permutation that swaps left and right points of the combined 33-point array.

After a horizontal image flip, ``keypoints[..., KEYPOINT_FLIP_PERMUTATION, :]`` (with x mirrored)
is again in person-left/person-right order. The first 25 entries are the BODY_25 permutation."""


@dataclass(frozen=True)
class Entity:
    """One body entity: the keypoints whose enclosing box defines it (paper Eq. 1).

    Attributes
    ----------
    name : str
    joints : tuple of int
        Indices into the combined 33-point array (BODY_25 then :data:`EXTRA_POINTS`).
    fallback_joints : tuple of int
        Used instead of ``joints`` when none of the extra points in ``joints`` is present
        (OpenPose input). Empty means "same as ``joints``".
    """

    name: str
    joints: tuple[int, ...]
    fallback_joints: tuple[int, ...] = ()

    def joints_for(self, has_extra: bool) -> tuple[int, ...]:
        if has_extra or not self.fallback_joints:
            return self.joints
        return self.fallback_joints


def _k(*names: str) -> tuple[int, ...]:
    return tuple(KEYPOINT_NAMES.index(n) for n in names)


@dataclass(frozen=True)
class EntityLayout:
    """An ordered set of body entities (K of them) with their left/right mirror permutation."""

    name: str
    entities: tuple[Entity, ...]

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entities)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Entity permutation that swaps left and right entities (for horizontal-flip augmentation)."""
        names = self.names

        def mirror(n: str) -> str:
            if n.startswith("left "):
                return "right " + n[5:]
            if n.startswith("right "):
                return "left " + n[6:]
            return n

        return tuple(names.index(mirror(n)) for n in names)


_HEAD = Entity("head", _k("Nose", "Neck", "REye", "LEye", "REar", "LEar"))
# The face box: eyes, nose and mouth corners, so it covers the face rather than a strip across the
# eyes. Without mouth points (OpenPose), eyes + nose + ears approximate it.
_FACE = Entity(
    "face",
    _k("Nose", "REye", "LEye", "MouthL", "MouthR"),
    fallback_joints=_k("Nose", "REye", "LEye", "REar", "LEar"),
)
# Hand boxes cover the hand (wrist + finger points), not the forearm. Without finger points the
# wrist and elbow are the only evidence; that box then covers the forearm.
_LHAND = Entity("left hand", _k("LWrist", "LPinky", "LIndex", "LThumb"), _k("LWrist", "LElbow"))
_RHAND = Entity("right hand", _k("RWrist", "RPinky", "RIndex", "RThumb"), _k("RWrist", "RElbow"))
_TORSO = Entity("torso", _k("Neck", "RShoulder", "LShoulder", "MidHip", "RHip", "LHip"))
_LOWER = Entity(
    "lower body",
    _k("RHip", "LHip", "RKnee", "LKnee", "RAnkle", "LAnkle",
       "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"),
)

MA52_ENTITIES = EntityLayout("ma52", (_HEAD, _FACE, _LHAND, _RHAND, _TORSO, _LOWER))
"""K=6 entities for MA-52 (seated, full body visible): head, face, left/right hand, torso, lower body."""

IMIGUE_ENTITIES = EntityLayout("imigue", (_HEAD, _FACE, _LHAND, _RHAND, _TORSO))
"""K=5 entities for iMiGUE (upper body only): MA-52's layout without the lower body."""

ENTITY_LAYOUTS = {"ma52": MA52_ENTITIES, "imigue": IMIGUE_ENTITIES}
