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

__all__ = ["MicroDualNetConfig", "BACKBONE_ARCHS", "reference_tsm_interval"]

# name -> (Bottleneck blocks per stage). All are torchvision Bottleneck ResNets, so every backbone,
# the test-sized one included, ends in 512 * 4 = 2048 channels like the paper's C = 2048.
BACKBONE_ARCHS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet_tiny": (1, 1, 1, 1),
}


def reference_tsm_interval(arch: str) -> int:
    """Block interval of the reference TSM code (``make_temporal_shift``, place "blockres"):
    ``n_round = 2`` when layer3 has 23 or more blocks (ResNet-101: blocks 0, 2, 4, ... of every
    stage), else 1 (every block of ResNet-50). The one place this rule lives."""
    return 2 if BACKBONE_ARCHS[arch][2] >= 23 else 1


Paths = Literal["dual", "st", "ts"]
Fusion = Literal["routing", "average", "concat"]
Modality = Literal["rgb_pose", "rgb", "pose"]
EntitySource = Literal["keypoints", "fixed_regions", "center_crop", "global"]
Aggregation = Literal["dual_path", "avg_pool", "max_pool", "lstm", "temporal_transformer", "none"]
_CHOICES: dict[str, tuple[str, ...]] = {
    "paths": ("dual", "st", "ts"),
    "fusion": ("routing", "average", "concat"),
    "modality": ("rgb_pose", "rgb", "pose"),
    "aggregation": ("dual_path", "avg_pool", "max_pool", "lstm", "temporal_transformer", "none"),
    "mac_granularity": ("frame", "video"),
}


@dataclass
class MicroDualNetConfig:
    """All hyper-parameters of the model and its loss.

    Defaults are the MA-52 setting of the paper (K=6 entities, T=8 frames, 52 classes, TSM
    ResNet-101). Use the presets :meth:`ma52`, :meth:`ma52_16f`, :meth:`imigue` and :meth:`tiny`.
    """

    # --- task ---------------------------------------------------------------------------------
    num_classes: int = 52
    num_frames: int = 8
    """T. Used for the temporal position table's size check and for summaries; the model accepts any
    T at run time (the TSM shift and the sinusoidal encoding both follow the input)."""
    entity_layout: str = "ma52"
    """Key of :data:`model.taxonomy.ENTITY_LAYOUTS` ("ma52": K=6, "imigue": K=5)."""
    entity_names: tuple[str, ...] | None = None
    """A subset of the layout's entities, in layout order (None: all). E.g. a K=4 variant of Table
    III's "w/ 4 entities" row; the 5-entity reading of that row is ``entity_layout="imigue"``."""
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
    (default) follows the reference TSM code (:func:`reference_tsm_interval`: 2 for ResNet-101, 1
    for ResNet-50). See :attr:`tsm_interval`."""
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
    attention_dropout: float | None = None
    """Dropout on the attention weights (inside softmax(QK^T)V), as in standard transformer layers;
    None means the same as ``dropout`` (IV-B's "dropout 0.1" read as applying to every dropout
    site of the layer). 0 keeps dropout on the sub-layer outputs and FFN only."""
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
    """R_i's output layer starts at zero (weights and bias), so with the prior b_i = 0 routing is
    exactly 0.5 / 0.5 for any input at initialisation (IV-B: "b_i initialized to zero")."""

    # --- head (III-E, IV-B) -------------------------------------------------------------------
    project_global: bool = True
    """The classifier-input switch. True: project the 2048-d GAP feature to D before the
    concatenation of Eq. 20, so the classifier input is 2D = 512 as IV-B writes (512 -> 256 -> C).
    False: concatenate the raw 2048-d feature as Eq. 20 writes, input 2048 + 256 = 2304."""
    classifier_hidden: int = 256
    classifier_dropout: float = 0.5

    # --- loss (III-D, III-E) ------------------------------------------------------------------
    mac_temperature: float = 0.07
    mac_weight: float = 0.1
    """lambda of Eq. 21."""
    mac_granularity: str = "frame"
    """"frame": Eq. 16 as written - the ST output at (i, t) against the TS outputs of entity i at
    every time j (Table IV "Frame-level MAC"). "video": the paths' time-averaged entity outputs, ST
    entity i against the TS outputs of all K entities of the clip (a reading of Table IV's
    undefined "Video-level MAC (Ours)"; invariant to reordering time steps). docs/model.md."""
    mac_confidence_weighting: bool = True
    """Weight Eq. 17's terms by entity confidence c (False: c = 1, Table III "w/o confidence
    weighting")."""

    # --- ablations (IV-C, IV-D; docs/model.md maps every table row to these) ----------------------
    paths: str = "dual"
    """"dual" (paper), "st" (ST path only) or "ts" (TS path only)."""
    fusion: str = "routing"
    """"routing" (Eqs. 13-15), "average" (0.5 / 0.5, no routing parameters, Table II rows without
    routing) or "concat" (Linear(2D -> D) of [x_st; x_ts], the "simple concatenation" of III-C.4)."""
    use_mac: bool = True
    """Add lambda * MAC to the loss (needs both paths)."""
    modality: str = "rgb_pose"
    """Inputs used (Table I): "rgb_pose" (paper: keypoint-guided boxes on CNN maps), "rgb" (no
    keypoints at all: boxes from ``entity_source``, default fixed regions; every confidence 1),
    "pose" (entity features from keypoint coordinates and motion, no CNN)."""
    entity_source: str | None = None
    """Where entity boxes come from (Table III): "keypoints" (Eq. 1), "fixed_regions" (MANet-style
    regions of the frame), "center_crop" (every entity reads the same central box), "global" (no
    SEM: one entity per frame, the projected GAP feature; Table II "+ TS Only"). None: "keypoints"
    for "rgb_pose", "fixed_regions" for "rgb". With "rgb_pose", keypoints still give the entity
    confidences (MAC weights) whatever the box source. See :attr:`boxes_from`."""
    center_crop_fraction: float = 0.5
    """Side of the "center_crop" box as a fraction of the frame's width and height."""
    aggregation: str = "dual_path"
    """Temporal modelling of the entity features (Table IV "Temporal Aggregation"): "dual_path"
    (paper), "avg_pool" / "max_pool" over time, "lstm" (one LSTM over time per entity),
    "temporal_transformer" (Temporal-T only, entities independent), or "none" (no entity branch:
    the plain TSM baseline of Table II, classifier on the GAP feature)."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes carried into checkpoints (e.g. training run id). Not read by the model."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_ARCHS:
            raise ValueError(f"backbone must be one of {sorted(BACKBONE_ARCHS)}, got {self.backbone!r}")
        if self.entity_layout not in ENTITY_LAYOUTS:
            raise ValueError(f"entity_layout must be one of {sorted(ENTITY_LAYOUTS)}, got {self.entity_layout!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.entity_source is not None and self.entity_source not in ("keypoints", "fixed_regions", "center_crop",
                                                                         "global"):
            raise ValueError(f"entity_source must be None, 'keypoints', 'fixed_regions', 'center_crop' or 'global', "
                             f"got {self.entity_source!r}")
        if self.modality == "rgb" and self.entity_source == "keypoints":
            raise ValueError("modality 'rgb' uses no keypoints: entity_source must be 'fixed_regions', "
                             "'center_crop' or 'global'")
        if self.modality == "pose" and self.entity_source not in (None, "keypoints"):
            raise ValueError("modality 'pose' builds entities from keypoints only (entity_source None or 'keypoints')")
        if self.modality == "pose" and self.aggregation == "none":
            raise ValueError("aggregation 'none' (the TSM baseline) needs the CNN; modality 'pose' has none")
        if not 0 < self.center_crop_fraction <= 1:
            raise ValueError(f"center_crop_fraction must be in (0, 1], got {self.center_crop_fraction}")
        if self.entity_names is not None:
            self.entity_names = tuple(self.entity_names)
            unknown = sorted(set(self.entity_names) - set(ENTITY_LAYOUTS[self.entity_layout].names))
            if unknown or not self.entity_names:
                raise ValueError(f"entity_names must be a non-empty subset of the {self.entity_layout!r} layout's "
                                 f"entities {ENTITY_LAYOUTS[self.entity_layout].names}; unknown: {unknown}")
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
        """The keypoint entities (the layout, restricted to ``entity_names``)."""
        base = ENTITY_LAYOUTS[self.entity_layout]
        if self.entity_names is None:
            return base
        return EntityLayout(base.name, tuple(e for e in base.entities if e.name in self.entity_names))

    @property
    def boxes_from(self) -> str:
        """The resolved ``entity_source``: "keypoints", "fixed_regions", "center_crop" or "global"."""
        if self.entity_source is not None:
            return self.entity_source
        return "fixed_regions" if self.modality == "rgb" else "keypoints"

    @property
    def num_entities(self) -> int:
        """K (1 for the "global" entity source)."""
        return 1 if self.boxes_from == "global" else self.layout.num_entities

    @property
    def classifier_input_dim(self) -> int:
        """Width of [f_cnn; f_entity] (Eq. 20): 512 or 2304 with the paper's sizes (``project_global``)."""
        global_dim = self.embed_dim if self.project_global else self.feature_channels
        if self.modality == "pose":
            return self.embed_dim
        if self.aggregation == "none":
            return global_dim
        return global_dim + self.embed_dim

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
        return reference_tsm_interval(self.backbone)

    @property
    def mac_active(self) -> bool:
        """MAC is defined between the two paths; a single-path model has nothing to contrast."""
        return self.use_mac and self.paths == "dual" and self.aggregation == "dual_path" and self.mac_weight > 0

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
    def ma52_16f(cls, **overrides: Any) -> "MicroDualNetConfig":
        """MA-52 at T=16 (stride 4, :data:`model.windows.MA52_16F_PLAN`): the frame count of the
        full model in every ablation table (Table IV: 16 frames 65.1, 8 frames 63.2; IV-B says 8)."""
        return cls.ma52(**{"num_frames": 16, **overrides})

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
        if self.entity_names is not None:
            d["entity_names"] = list(self.entity_names)
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
