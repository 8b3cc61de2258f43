"""MediaPipe BlazePose (mediapipe 0.10.14, legacy ``solutions.pose``) as a BODY_25 pose backend.

Settings (DESIGN.md section 5):

- ``model_complexity=1`` ("full"): the only BlazePose model inside the 0.10.14 wheel. Complexity 0 and
  2 would be downloaded at run time, which is not allowed here; they are refused with an error.
- Video mode (``static_image_mode=False``), ``smooth_landmarks=False``: the built-in smoothing cut a
  nod's amplitude by 40% and lagged 2-3 frames, erasing the micro-movements the model needs.
- A fresh ``Pose`` per video, so no tracking state leaks from one video into the next.
- Sampled frames (``--frames sampled``): the tracker then sees gaps (7 frames with the default plan).
  It keeps its state across them (``keep_tracking_across_gaps=True``): a seated participant moves little
  in 0.27 s and the tracker falls back to the person detector by itself when it loses the body.
  Measured on the four MA-52 sample clips, landmarks from every-8th-frame tracking differ from
  every-frame tracking by 1.5-3.5 px on average (at 1080x1296), while a reset per frame (detector on
  every frame, ``keep_tracking_across_gaps=False``) differs by 2.8-5.6 px.

BlazePose 33 -> BODY_25 (both name sides from the person's own point of view):

=====  ==========  ===========================================  =====================================
BODY   name        BlazePose source                             confidence
=====  ==========  ===========================================  =====================================
0      Nose        0 nose                                       visibility
1      Neck        midpoint of 11 left_shoulder, 12 right_sh.   min of the two
2      RShoulder   12 right_shoulder                            visibility
3      RElbow      14 right_elbow                               visibility
4      RWrist      16 right_wrist                               visibility
5      LShoulder   11 left_shoulder                             visibility
6      LElbow      13 left_elbow                                visibility
7      LWrist      15 left_wrist                                visibility
8      MidHip      midpoint of 23 left_hip, 24 right_hip        min of the two
9      RHip        24 right_hip                                 visibility
10     RKnee       26 right_knee                                visibility
11     RAnkle      28 right_ankle                               visibility
12     LHip        23 left_hip                                  visibility
13     LKnee       25 left_knee                                 visibility
14     LAnkle      27 left_ankle                                visibility
15     REye        5 right_eye                                  visibility
16     LEye        2 left_eye                                   visibility
17     REar        8 right_ear                                  visibility
18     LEar        7 left_ear                                   visibility
19     LBigToe     31 left_foot_index                           visibility
20     LSmallToe   (none)                                       0, 0, 0
21     LHeel       29 left_heel                                 visibility
22     RBigToe     32 right_foot_index                          visibility
23     RSmallToe   (none)                                       0, 0, 0
24     RHeel       30 right_heel                                visibility
=====  ==========  ===========================================  =====================================

Extra points (:data:`model.taxonomy.EXTRA_POINTS`): 17 left_pinky, 18 right_pinky, 19 left_index,
20 right_index, 21 left_thumb, 22 right_thumb, 9 mouth_left, 10 mouth_right.

BlazePose extrapolates joints outside the image with high visibility; such joints (outside the image
the model saw, i.e. the ROI crop when one is given) are set to 0, 0, 0. Midpoints take the minimum, so a
Neck with one shoulder outside is missing too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.taxonomy import NUM_BODY25, NUM_EXTRA
from pipeline import native_stderr

__all__ = ["MediaPipeConfig", "MediaPipePose", "BODY25_FROM_BLAZEPOSE", "EXTRA_FROM_BLAZEPOSE", "blazepose_to_body25"]

# Per BODY_25 joint: a BlazePose index, a pair (midpoint), or None (no counterpart).
BODY25_FROM_BLAZEPOSE: tuple[int | tuple[int, int] | None, ...] = (
    0, (11, 12), 12, 14, 16, 11, 13, 15, (23, 24), 24, 26, 28, 23, 25, 27, 5, 2, 8, 7, 31, None, 29, 32, None, 30,
)
EXTRA_FROM_BLAZEPOSE: tuple[int, ...] = (17, 18, 19, 20, 21, 22, 9, 10)

_MODEL_FILES = ("modules/pose_landmark/pose_landmark_full.tflite", "modules/pose_detection/pose_detection.tflite")


@dataclass(frozen=True)
class MediaPipeConfig:
    """Settings of the MediaPipe backend (recorded in every keypoints sidecar).

    Attributes
    ----------
    model_complexity : int
        Must be 1 (see module docstring).
    min_detection_confidence, min_tracking_confidence : float
        MediaPipe's thresholds for the person detector and for keeping the track.
    smooth_landmarks : bool
        MediaPipe's temporal landmark filter; off by default (it damps micro-movements).
    keep_tracking_across_gaps : bool
        Keep the tracker's state between sampled frames (True) or detect afresh on every frame.
    """

    model_complexity: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    smooth_landmarks: bool = False
    keep_tracking_across_gaps: bool = True

    def __post_init__(self) -> None:
        if self.model_complexity != 1:
            raise ValueError(
                f"model_complexity={self.model_complexity} is not available offline: mediapipe 0.10.14 ships only "
                "the 'full' BlazePose model (model_complexity=1); complexity 0 and 2 would be downloaded at run time"
            )
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")


# The mapping as index arrays (vectorised: one call per frame costs microseconds, not a Python loop).
# Each BODY_25 joint is the midpoint of landmarks _SRC_A and _SRC_B (the same index for a plain joint,
# where the midpoint is exact: (x + x) / 2 == x); _HAS_SRC is False for the small toes.
_HAS_SRC = np.array([s is not None for s in BODY25_FROM_BLAZEPOSE])
_SRC_A = np.array([(s[0] if isinstance(s, tuple) else s) if s is not None else 0 for s in BODY25_FROM_BLAZEPOSE])
_SRC_B = np.array([(s[1] if isinstance(s, tuple) else s) if s is not None else 0 for s in BODY25_FROM_BLAZEPOSE])
_EXTRA_SRC = np.array(EXTRA_FROM_BLAZEPOSE)


def blazepose_to_body25(
    landmarks: np.ndarray, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map 33 BlazePose landmarks (pixels) to BODY_25 and the 8 extra points.

    Parameters
    ----------
    landmarks : array [33, 3]
        x, y in pixels of the image the model saw, and visibility.
    image_size : (width, height) of that image.

    Returns
    -------
    body25 : float32 [25, 3]
        Joints outside the image and joints without counterpart are 0, 0, 0.
    extra : float32 [8, 3]
    raw : float32 [25, 3]
        The mapped joints before out-of-image zeroing (for the plausibility check); small toes 0.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    w, h = image_size
    vis = np.clip(lm[:, 2], 0.0, 1.0)
    inside = (lm[:, 0] >= 0) & (lm[:, 0] < w) & (lm[:, 1] >= 0) & (lm[:, 1] < h)
    conf_in = np.where(inside, vis, np.float32(0.0))  # visibility, 0 outside the image
    raw = np.zeros((NUM_BODY25, 3), np.float32)
    raw[:, :2] = (lm[_SRC_A, :2] + lm[_SRC_B, :2]) / 2
    raw[:, 2] = np.minimum(vis[_SRC_A], vis[_SRC_B])
    raw[~_HAS_SRC] = 0.0
    conf = np.where(_HAS_SRC, np.minimum(conf_in[_SRC_A], conf_in[_SRC_B]), np.float32(0.0))
    body = np.zeros((NUM_BODY25, 3), np.float32)
    on = conf > 0
    body[on, :2] = raw[on, :2]
    body[on, 2] = conf[on]
    extra = np.zeros((NUM_EXTRA, 3), np.float32)
    e_conf = conf_in[_EXTRA_SRC]
    e_on = e_conf > 0
    extra[e_on, :2] = lm[_EXTRA_SRC[e_on], :2]
    extra[e_on, 2] = e_conf[e_on]
    return body, extra, raw


@contextlib.contextmanager
def _quiet_native_logging() -> Iterator[None]:
    """Ask MediaPipe's C++ logging (glog, TFLite) for warnings and above while it starts.

    The variables are read when the native libraries initialise (first import / first graph), so they
    are set only for that moment and removed again: no environment change is left behind. A value
    the user set is kept.
    """
    added = [k for k in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL") if k not in os.environ]
    for k in added:
        os.environ[k] = "2"
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextlib.contextmanager
def _protobuf_warning_ignored() -> Iterator[None]:
    """protobuf's deprecation warning fires inside every ``process()`` call of this mediapipe release;
    ignore it for the call only (no process-wide filter left behind)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
        yield


def _check_models_present() -> None:
    import mediapipe

    root = Path(mediapipe.__file__).parent
    missing = [f for f in _MODEL_FILES if not (root / f).exists()]
    if missing:
        raise RuntimeError(
            f"mediapipe at {root} lacks {', '.join(missing)}; install mediapipe==0.10.14, whose wheel ships "
            "BlazePose full (nothing is downloaded at run time)"
        )


class MediaPipePose:
    """A BlazePose estimator for one video; use as a context manager (fresh tracker per video).

    Examples
    --------
    >>> with MediaPipePose(MediaPipeConfig()) as pose:            # doctest: +SKIP
    ...     lm = pose.landmarks(rgb_image)  # [33, 3] pixels + visibility, or None
    """

    def __init__(self, config: MediaPipeConfig = MediaPipeConfig()) -> None:
        self.config = config
        self._pose = None

    def __enter__(self) -> "MediaPipePose":
        c = self.config
        # MediaPipe's C++ start-up chatter goes to fd 2 directly: filtered once per process (never by
        # switching fd 2 from this thread), unless the user asked for debug output.
        native_stderr.install()
        with _quiet_native_logging(), _protobuf_warning_ignored():
            _check_models_present()
            import mediapipe as mp

            self._pose = mp.solutions.pose.Pose(
                static_image_mode=not c.keep_tracking_across_gaps,
                model_complexity=c.model_complexity,
                smooth_landmarks=c.smooth_landmarks,
                enable_segmentation=False,
                min_detection_confidence=c.min_detection_confidence,
                min_tracking_confidence=c.min_tracking_confidence,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """The 33 landmarks in pixels of ``rgb`` (x, y, visibility), or None when no person is found."""
        if self._pose is None:
            raise RuntimeError("MediaPipePose must be used inside a 'with' block")
        h, w = rgb.shape[:2]
        with _protobuf_warning_ignored():
            result = self._pose.process(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return None
        lm = np.array([(p.x * w, p.y * h, p.visibility) for p in result.pose_landmarks.landmark], np.float32)
        return lm
