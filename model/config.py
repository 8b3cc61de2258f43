"""Typed configuration of Micro-DualNet, with the paper's defaults and the choices it leaves open.

Every field that the paper (Micro-DualNet, sections III and IV-B) states is set to the paper's value;
every point it leaves open or states twice is a field too, with the reading chosen here as the
default and the alternative one switch away. ``docs/model.md`` lists them with reasons.

The config is plain data (str, int, float, bool, tuples) so that :func:`dataclasses.asdict` of it can
be stored inside a checkpoint and read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from model.entities import CONFIDENCE_RULES, EntityDefinition
from model.taxonomy import ENTITY_LAYOUTS, EntityLayout

__all__ = ["MicroDualNetConfig", "BACKBONE_ARCHS"]

# name -> (Bottleneck blocks per stage). All are torchvision Bottleneck ResNets, so every backbone,
# the test-sized one included, ends in 512 * 4 = 2048 channels like the paper's C = 2048.
BACKBONE_ARCHS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet_tiny": (1, 1, 1, 1),
}

Paths = Literal["dual", "st", "ts"]
Fusion = Literal["routing", "average"]
Modality = Literal["rgb_pose", "rgb", "pose"]


@dataclass
class MicroDualNetConfig:
    """All hyper-parameters of the model and its loss.

    Defaults are the MA-52 setting of the paper (K=6 entities, T=8 frames, 52 classes, TSM
    ResNet-101). Use the presets :meth:`ma52`, :meth:`imigue` and :meth:`tiny`.
    """

    # --- task ---------------------------------------------------------------------------------
    num_classes: int = 52
    num_frames: int = 8
    """T. Used for the temporal position table's size check and for summaries; the model accepts any
    T at run time (the TSM shift and the sinusoidal encoding both follow the input)."""
    entity_layout: str = "ma52"
    """Key of :data:`model.taxonomy.ENTITY_LAYOUTS` ("ma52": K=6, "imigue": K=5)."""
    image_size: tuple[int, int] = (224, 224)
    """(height, width) the model is trained at; informative (summaries, benchmarks), not enforced."""

    # --- backbone (III-B, IV-B) ---------------------------------------------------------------
    backbone: str = "resnet101"
    """One of :data:`BACKBONE_ARCHS`."""
    backbone_width_per_group: int = 64
    """Inner width of the Bottleneck blocks (torchvision's ``width_per_group``); 64 is standard."""
    tsm_shift_div: int = 8
    """1/``tsm_shift_div`` of the channels shift forward in time and as many backward (TSM: 8)."""
    tsm_block_interval: int | None = None
    """Shift in blocks 0, n, 2n, ... of each stage; 0 disables the shift (a TSN backbone). None
    (default) follows the reference TSM code (``make_temporal_shift``, place "blockres"): n=2 when
    layer3 has 23 or more blocks (ResNet-101: blocks 0, 2, 4, ... of every stage), else n=1 (every
    block of ResNet-50). See :attr:`tsm_interval`."""
    feature_stride: int = 32
    """Stride of the last stage; ROIAlign's ``spatial_scale`` is 1 / this."""

    # --- spatial entity module (III-B, Eq. 2) -------------------------------------------------
    embed_dim: int = 256
    """D."""
    roi_size: int = 3
    """ROIAlign output size (not stated). A 224 input gives 7x7 maps on which a hand box spans
    one or two cells, so 3x3 samples every box densely without inventing detail."""
    roi_sampling_ratio: int = 2
    keypoint_threshold: float = 0.3
    """theta of Eq. 1."""
    box_padding: float = 0.10
    """Padding of Eq. 1 (10% each side)."""
    box_min_visible: int = 2
    """Visible joints an entity needs for a box of its own in a frame (Eq. 1: |V_i| >= 2)."""
    box_before_first: str = "next"
    """Box of an entity before its first own box in the clip, where Eq. 1 has no B_{i,t-1}:
    "next" back-fills the first own box (the whole image when it never has one), "image" uses the
    whole image (:mod:`model.entities`)."""
    keypoint_format: str = "body25"
    """Keypoints the entities are defined on (issue 15 item 5; III-B: "25 keypoints", OpenPose):
    "body25" uses BODY_25 joints only, so BlazePose keypoints with extra points are mapped to the
    same boxes as OpenPose's; "body25_extra" uses BlazePose's hand and mouth points (hand boxes
    cover the hand, the face box the mouth) and refuses BODY_25-only keypoints."""
    entity_confidence: str = "own_box"
    """The per-entity confidence c of Eq. 17 (MAC weights): "own_box" (default) = mean confidence
    of the entity's visible joints (conf > theta), 0 on frames whose box is carried over or
    back-filled; "visible_joints" = the same mean without the carry-over rule; "all_joints" = the
    mean over all joints, sub-threshold ones included (wave-1 behaviour)."""

    # --- transformers (III-C, IV-B) -----------------------------------------------------------
    num_layers: int = 3
    num_heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    share_path_transformers: bool = False
    """Whether the ST and TS paths use the same Spatial-T and Temporal-T weights. The paper draws
    the two paths as separate blocks; separate weights is the natural reading (default)."""
    residual_mlp_hidden: int = 256
    """Hidden width of MLP_s / MLP_t of Eqs. 9 and 11 (not stated; D keeps them light)."""

    # --- routing (III-C.4, IV-B) --------------------------------------------------------------
    routing_temperature: float = 1.0
    """tau_r. III-C.4 says 0.7, IV-B (the experimental setting) says 1.0; 1.0 is the default here
    because IV-B describes the trained models. Set 0.7 for the method section's value."""
    routing_hidden: int | None = None
    """Hidden width of R_i; None means D/2 (paper: 512 -> 128 -> 2)."""
    routing_dropout: float = 0.1

    # --- head (III-E, IV-B) -------------------------------------------------------------------
    project_global: bool = True
    """Project the 2048-d GAP feature to D before concatenation, so the classifier input is
    2D = 512 as IV-B writes (512 -> 256 -> C). False concatenates the raw 2048-d feature."""
    classifier_hidden: int = 256
    classifier_dropout: float = 0.5

    # --- loss (III-D, III-E) ------------------------------------------------------------------
    mac_temperature: float = 0.07
    mac_weight: float = 0.1
    """lambda of Eq. 21."""

    # --- ablations (IV-D) ---------------------------------------------------------------------
    paths: str = "dual"
    """"dual" (paper), "st" (ST path only) or "ts" (TS path only)."""
    fusion: str = "routing"
    """"routing" (Eqs. 13-15) or "average" (0.5 / 0.5, no routing parameters)."""
    use_mac: bool = True
    """Add lambda * MAC to the loss (needs both paths)."""
    modality: str = "rgb_pose"
    """"rgb_pose" (paper: keypoint-guided boxes on CNN maps), "rgb" (fixed body regions, no
    keypoints needed), "pose" (entity features from keypoint coordinates and motion, no CNN)."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes carried into checkpoints (e.g. training run id). Not read by the model."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_ARCHS:
            raise ValueError(f"backbone must be one of {sorted(BACKBONE_ARCHS)}, got {self.backbone!r}")
        if self.entity_layout not in ENTITY_LAYOUTS:
            raise ValueError(f"entity_layout must be one of {sorted(ENTITY_LAYOUTS)}, got {self.entity_layout!r}")
        for name, allowed in (("paths", ("dual", "st", "ts")), ("fusion", ("routing", "average")),
                              ("modality", ("rgb_pose", "rgb", "pose"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.tsm_block_interval is not None and self.tsm_block_interval < 0:
            raise ValueError(f"tsm_block_interval must be None or >= 0, got {self.tsm_block_interval}")
        if self.entity_confidence not in CONFIDENCE_RULES:
            raise ValueError(f"entity_confidence must be one of {CONFIDENCE_RULES}, got {self.entity_confidence!r}")
        if self.keypoint_format not in ("body25", "body25_extra"):
            raise ValueError(f"keypoint_format must be 'body25' or 'body25_extra', got {self.keypoint_format!r}")
        if self.box_before_first not in ("next", "image"):
            raise ValueError(f"box_before_first must be 'next' or 'image', got {self.box_before_first!r}")
        if self.routing_temperature <= 0 or self.mac_temperature <= 0:
            raise ValueError("temperatures must be positive")
        self.image_size = tuple(self.image_size)  # lists come back from checkpoints

    # --- derived --------------------------------------------------------------------------------
    @property
    def layout(self) -> EntityLayout:
        return ENTITY_LAYOUTS[self.entity_layout]

    @property
    def num_entities(self) -> int:
        """K."""
        return self.layout.num_entities

    @property
    def entity_definition(self) -> EntityDefinition:
        """The entity boxes this config asks for (Eq. 1 with this config's theta, padding, format)."""
        return EntityDefinition.from_layout(
            self.layout, keypoint_format=self.keypoint_format, threshold=self.keypoint_threshold,
            padding=self.box_padding, min_visible=self.box_min_visible, before_first=self.box_before_first,
            confidence_rule=self.entity_confidence)

    @property
    def tsm_interval(self) -> int:
        """The block interval actually used (resolves ``tsm_block_interval=None``)."""
        if self.tsm_block_interval is not None:
            return self.tsm_block_interval
        return 2 if BACKBONE_ARCHS[self.backbone][2] >= 23 else 1

    @property
    def mac_active(self) -> bool:
        """MAC is defined between the two paths; a single-path model has nothing to contrast."""
        return self.use_mac and self.paths == "dual" and self.mac_weight > 0

    @property
    def feature_channels(self) -> int:
        """C of the backbone's last stage (Bottleneck: 512 * expansion 4)."""
        return 2048

    # --- presets --------------------------------------------------------------------------------
    @classmethod
    def ma52(cls, **overrides: Any) -> "MicroDualNetConfig":
        """MA-52: K=6, T=8 (stride 8), 52 classes, TSM ResNet-101 at 224x224."""
        return cls(**{"num_classes": 52, "num_frames": 8, "entity_layout": "ma52", **overrides})

    @classmethod
    def imigue(cls, **overrides: Any) -> "MicroDualNetConfig":
        """iMiGUE: K=5 (no lower body), T=16 (stride 4), 32 classes, TSM ResNet-101."""
        return cls(**{"num_classes": 32, "num_frames": 16, "entity_layout": "imigue", **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> "MicroDualNetConfig":
        """The same architecture at toy size, for tests and CPU demos.

        A one-block-per-stage Bottleneck ResNet with inner width 16 (about 3M parameters, still
        2048 output channels), TSM in every block, D=32, one layer, two heads, 64x64 frames, T=4.
        """
        base = dict(
            num_classes=52, num_frames=4, entity_layout="ma52", image_size=(64, 64),
            backbone="resnet_tiny", backbone_width_per_group=16, tsm_block_interval=1,
            embed_dim=32, num_layers=1, num_heads=2, ffn_dim=64, residual_mlp_hidden=32,
            classifier_hidden=32,
        )
        return cls(**{**base, **overrides})

    # --- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data dict (safe for ``torch.load(weights_only=True)``)."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MicroDualNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; is the checkpoint from a newer version?")
        return cls(**d)

    def replace(self, **changes: Any) -> "MicroDualNetConfig":
        return replace(self, **changes)
