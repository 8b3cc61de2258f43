"""Settings of one pose run (:class:`PoseConfig`), shared by the pose stage and its backends."""

from __future__ import annotations

from dataclasses import dataclass

from model.windows import MA52_PLAN, WindowPlan
from pipeline.pose_mediapipe import MediaPipeConfig
from pipeline.pose_openpose import OpenPoseConfig
from pipeline.qc import PlausibilityConfig, QCConfig
from pipeline.roi import Roi

__all__ = ["PoseConfig", "BACKEND_NAMES", "FRAME_MODES"]

BACKEND_NAMES = ("mediapipe", "openpose-json")
FRAME_MODES = ("all", "sampled")


@dataclass(frozen=True)
class PoseConfig:
    """Settings of one pose run. Only the active backend's settings enter a video's config hash.

    Attributes
    ----------
    backend : {"mediapipe", "openpose-json"}
    frames : {"all", "sampled"}
        Pose on every frame, or only on the frames some window of ``plan`` samples.
    plan : WindowPlan
        Window geometry used by ``frames="sampled"`` (and recorded for the inference stage).
    roi : (x, y, w, h) or None
        Region of the frame where the participant sits; None for the whole frame.
    mediapipe, openpose : backend settings
    openpose_size : (width, height) or None
        Source image size for OpenPose input (JSON has none); None: the joints' extent.
    plausibility : PlausibilityConfig
    qc : QCConfig
    """

    backend: str = "mediapipe"
    frames: str = "all"
    plan: WindowPlan = MA52_PLAN
    roi: Roi | None = None
    mediapipe: MediaPipeConfig = MediaPipeConfig()
    openpose: OpenPoseConfig = OpenPoseConfig()
    openpose_size: tuple[int, int] | None = None
    plausibility: PlausibilityConfig = PlausibilityConfig()
    qc: QCConfig = QCConfig()

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKEND_NAMES)}")
        if self.frames not in FRAME_MODES:
            raise ValueError(f"frames must be one of {', '.join(FRAME_MODES)}, got {self.frames!r}")
