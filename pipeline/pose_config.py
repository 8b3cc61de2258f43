"""Settings of the pose stage: the user-facing :class:`PoseSettings` (one source of truth for the
CLI's flags and the flow's ``pose`` parameters, :mod:`pipeline.settings`) and the full
:class:`PoseConfig` of one run (what the stage and its backends read), built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from model.taxonomy import ENTITY_LAYOUTS
from model.windows import MA52_PLAN, WindowPlan
from pipeline.pose_mediapipe import MediaPipeConfig
from pipeline.pose_openpose import OpenPoseConfig
from pipeline.qc import PlausibilityConfig, QCConfig
from pipeline.roi import Roi

__all__ = ["PoseConfig", "PoseSettings", "BACKEND_NAMES", "FRAME_MODES"]

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


@dataclass(frozen=True)
class PoseSettings:
    """What a user chooses about pose, wherever pose is run (``python -m pipeline.pose`` or the flow).

    The window plan is not here: the CLI takes it as ``--clip-len/--stride/--hop`` and the flow from
    the checkpoint (the plan travels with the weights). Per-run choices that do not change results
    (``--workers``, ``--force``, ``--overlay``) stay CLI options.

    Attributes
    ----------
    frames : {"auto", "all", "sampled"}
        ``auto``: only the frames the windows sample when the window plan is the model's own (the flow,
        which reads it from the checkpoint: 8x less work for MA-52), every frame otherwise (the pose
        CLI, which cannot know the model).
    model_complexity : BlazePose model (mediapipe 0.10.14 ships only 1, "full", offline)
    plausibility : reject anatomically implausible skeletons (pipeline.qc)
    min_detected : QC flag ``low_detection`` below this share of posed frames with a usable pose
    layout : entity layout for QC and overlays
    """

    frames: Annotated[Literal["auto", *FRAME_MODES], Field(description=(
        "pose every frame, only the frames the recognition windows sample, or auto: sampled when the "
        "window plan is the checkpoint's (the flow), all otherwise"))] = "auto"
    model_complexity: Annotated[int, Field(ge=0, le=2, description="BlazePose model; only 1 ships offline")] = 1
    plausibility: Annotated[bool, Field(description="reject frames that fail the anatomical check (pipeline.qc)")] = True
    min_detected: Annotated[float, Field(ge=0, le=1, description="QC flag below this share of usable-pose frames")] = QCConfig.min_detected
    layout: Annotated[Literal[tuple(sorted(ENTITY_LAYOUTS))], Field(description="entity layout for QC and overlays")] = "ma52"

    def frame_mode(self, plan_from_checkpoint: bool) -> str:
        """``frames`` with ``auto`` resolved (see the class docstring)."""
        if self.frames != "auto":
            return self.frames
        return "sampled" if plan_from_checkpoint else "all"

    def config(self, *, plan: WindowPlan = MA52_PLAN, plan_from_checkpoint: bool = False, backend: str = "mediapipe",
               roi: Roi | None = None, openpose: OpenPoseConfig = OpenPoseConfig(),
               openpose_size: tuple[int, int] | None = None) -> PoseConfig:
        """The run's :class:`PoseConfig` from these settings and the run's plan and inputs."""
        return PoseConfig(backend=backend, frames=self.frame_mode(plan_from_checkpoint), plan=plan, roi=roi,
                          mediapipe=MediaPipeConfig(model_complexity=self.model_complexity), openpose=openpose,
                          openpose_size=openpose_size, plausibility=PlausibilityConfig(enabled=self.plausibility),
                          qc=QCConfig(layout=self.layout, min_detected=self.min_detected))

