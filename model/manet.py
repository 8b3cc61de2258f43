"""MANet, the MA-52 benchmark's RGB model (Guo et al., "Benchmarking Micro-action Recognition:
Dataset, Methods, and Applications", section IV-C; ``../shared/papers/ma52-manet.txt``).

A TSM ResNet-50 whose every Bottleneck block starts its residual branch with a temporal
squeeze-and-excitation (SE) gate, plus a joint-embedding head trained against label vectors::

    frames [B, T, 3, H, W]   ImageNet-normalised RGB (T = 8, 224 x 224 in the paper, V-B)
      -> fold time into batch, stem (conv 7x7/2, max pool /2)        F [B*T, 64, H/4, W/4]
      -> 16 Bottleneck blocks (3, 4, 6, 3), each (Eq. 1, residual branch only):
            z   = mean_{h,w} x                                        [B*T, C]     SE-squeeze, per frame
            s   = sigmoid(W2 relu(W1 z)),  W1: C -> C/4, W2: C/4 -> C  [B*T, C]     SE-excitation
            x'  = s * x                                               (gate per frame and channel)
            x'' = shift(x'): C/8 channels from frame t+1, C/8 from t-1
            out = relu(x + bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x'')))))))))
      -> maps [B, T, 2048, H/32, W/32] -> GAP per frame -> X_t [B, T, 2048]
      -> dropout -> classifier Linear(2048, C) per frame, averaged over T       logits [B, C]
      -> mean_t X_t -> Linear(2048, 300) - tanh - Linear(300, 300)             X_z    [B, 300]

"Temporal" SE: the squeeze keeps the time axis (IV-C: z in R^{T x 1 x 1 x C}), so each frame gets
its own channel gates; ``se_squeeze="clip"`` pools over the clip's T frames as well (one gate vector
per clip). The SE gate, the shift and the convolution live in one wrapper,
``layerX.Y.conv1 = TemporalShift(conv, gate=TemporalSE(C_in))`` (:mod:`model.backbone`), so the
backbone is the project's one TSM ResNet and ImageNet / TSM weights load into it unchanged (the
gates keep their initialisation, :func:`model.weights.load_backbone_weights`).

Loss (Eq. 3, :mod:`model.manet_loss`): ``L = CE(logits, y) + alpha * ||q_y - X_z||_2`` with alpha = 5
and q the user's label-vector file; without the file the embedding term is off.

Outputs and training interface (like :class:`model.micro_dualnet.MicroDualNet`):
``MANet(cfg)(frames) -> MANetOutput(logits, embedding, features)`` and
``model.loss(output, labels) -> MANetLossTerms(total, ce, emb)``. MANet needs pixels only
(:attr:`MANet.inputs`); ``keypoints`` is accepted and ignored, so callers may treat the families alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from model.backbone import TSMResNet
from model.config import BACKBONE_ARCHS
from model.manet_loss import EMBEDDING_DISTANCES, MANetLossTerms, manet_loss

__all__ = ["MANetConfig", "MANet", "MANetOutput", "TemporalSE", "SE_SQUEEZES"]

SE_SQUEEZES = ("frame", "clip")


@dataclass(frozen=True)
class MANetConfig:
    """MANet's hyper-parameters. Defaults are the paper's MA-52 configuration (sections IV-C, V-B).

    Plain data (str, int, float, bool, lists), so ``to_dict()`` (:func:`dataclasses.asdict`) can be
    stored in a checkpoint and read back with ``torch.load(..., weights_only=True)``. Training
    settings (optimiser, schedule, batch) are not model fields: :data:`recipes.manet_paper_rows.MANET_TRAINING`.
    """

    # --- task (V-B) -----------------------------------------------------------------------------
    num_classes: Annotated[int, Field(gt=0, description="outputs; 52 MA-52 actions")] = 52
    num_frames: Annotated[int, Field(gt=0, description=(
        "T, frames sampled per clip (V-B: T = 8; Table III: 4, 8, 16). Informative: any T runs"))] = 8
    image_size: Annotated[tuple[int, int], Field(description=(
        "(height, width) of the frames (V-B: resized to 224 x 224). Informative, not enforced"))] = (224, 224)

    # --- backbone (IV-C, Fig. 3, V-B) -----------------------------------------------------------
    backbone: Annotated[str, Field(description=(
        "Bottleneck ResNet of model.config.BACKBONE_ARCHS (IV-C, Fig. 3: ResNet-50)"))] = "resnet50"
    backbone_width_per_group: Annotated[int, Field(gt=0, description=(
        "Bottleneck inner width (torchvision width_per_group; 64 standard, smaller in tiny())"))] = 64
    tsm_shift_div: Annotated[int, Field(ge=2, description=(
        "1/tsm_shift_div of the channels shift each way (IV-C Eq. 1, V-B: 1/8)"))] = 8
    tsm_block_interval: Annotated[int | None, Field(ge=0, description=(
        "shift in blocks 0, n, 2n, ... of a stage; 0: no shift; None: the reference TSM rule (every "
        "block of ResNet-50). IV-C: every block"))] = None

    # --- temporal squeeze-and-excitation (IV-C, V-B) --------------------------------------------
    use_se: Annotated[bool, Field(description=(
        "SE gate in every block (Table V 'w/o SE' and 'Baseline': False)"))] = True
    se_ratio: Annotated[int, Field(gt=0, description=(
        "reduction of the excitation's first layer, C -> C/ratio (IV-C, V-B: Ratio = 4)"))] = 4
    se_squeeze: Annotated[Literal["frame", "clip"], Field(description=(
        "'frame': squeeze over H, W of each frame (IV-C: z in R^{T x 1 x 1 x C}); 'clip': also over T"))] = "frame"
    se_bias: Annotated[bool, Field(description=(
        "biases in the two excitation layers (not stated; the authors' code has none)"))] = False

    # --- heads (IV-B, IV-C) ---------------------------------------------------------------------
    dropout: Annotated[float, Field(ge=0, lt=1, description=(
        "dropout on the per-frame features before both heads (not stated; the authors' MA-52 model "
        "config uses 0.5)"))] = 0.5
    head_init_std: Annotated[float, Field(gt=0, description=(
        "std of the normal init of the head layers, biases 0 (not stated; TSM and the authors' code: 0.001)"))] = 0.001
    embedding_dim: Annotated[int, Field(gt=0, description=(
        "D of the joint embedding space = the label vectors' width (IV-C: GloVe, 300)"))] = 300
    embedding_hidden: Annotated[int, Field(gt=0, description=(
        "hidden width of the map to the joint space, Linear(2048, h) - tanh - Linear(h, D) (IV-C says "
        "only 'mapped'; the authors' code: 300)"))] = 300
    embed_before_average: Annotated[bool, Field(description=(
        "False: average the frame features over T, then map (IV-C: 'the averaged visual features ... "
        "are then mapped'); True: map every frame, then average (the authors' code)"))] = False

    # --- loss (IV-C Eqs. 2-3, V-B, Table IV) ----------------------------------------------------
    embedding_weight: Annotated[float, Field(ge=0, description=(
        "alpha of Eq. 3 (V-B: 5; Table IV: 0, 0.1, 1, 2, 5, 10). 0 builds no embedding head "
        "(Table IV alpha = 0 = Table V 'w/o emb')"))] = 5.0
    embedding_distance: Annotated[Literal["euclidean", "mse"], Field(description=(
        "'euclidean': ||q - z||_2 per clip, averaged (Eq. 2); 'mse': mean over clips and dimensions "
        "of (q - z)^2 (the authors' code, which weights it by 50)"))] = "euclidean"

    extra: Annotated[dict[str, Any], Field(description=(
        "free-form notes carried into checkpoints; not read by the model"))] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_ARCHS:
            raise ValueError(f"backbone must be one of {sorted(BACKBONE_ARCHS)}, got {self.backbone!r}")
        for name in ("num_classes", "num_frames", "backbone_width_per_group", "se_ratio", "embedding_dim",
                     "embedding_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.tsm_shift_div < 2:
            raise ValueError(f"tsm_shift_div must be >= 2, got {self.tsm_shift_div}")
        if self.tsm_block_interval is not None and self.tsm_block_interval < 0:
            raise ValueError(f"tsm_block_interval must be None or >= 0, got {self.tsm_block_interval}")
        if self.se_squeeze not in SE_SQUEEZES:
            raise ValueError(f"se_squeeze must be one of {SE_SQUEEZES}, got {self.se_squeeze!r}")
        if self.embedding_distance not in EMBEDDING_DISTANCES:
            raise ValueError(f"embedding_distance must be one of {EMBEDDING_DISTANCES}, got {self.embedding_distance!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.embedding_weight >= 0:
            raise ValueError(f"embedding_weight must be >= 0, got {self.embedding_weight}")
        if not self.head_init_std > 0:
            raise ValueError(f"head_init_std must be > 0, got {self.head_init_std}")
        size = tuple(self.image_size)
        if len(size) != 2:
            raise ValueError(f"image_size must be (height, width), got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)  # lists come back from checkpoints

    # --- derived --------------------------------------------------------------------------------
    @property
    def has_embedding_head(self) -> bool:
        """The joint-embedding head exists iff alpha > 0."""
        return self.embedding_weight > 0

    @property
    def feature_channels(self) -> int:
        """C of the backbone's last stage (Bottleneck: 512 * expansion 4)."""
        return TSMResNet.out_channels

    # --- presets --------------------------------------------------------------------------------
    @classmethod
    def ma52(cls, **overrides: Any) -> "MANetConfig":
        """The paper's MA-52 model (= the defaults): TSM ResNet-50 + SE (ratio 4), T=8, 224x224, alpha 5."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> "MANetConfig":
        """The same architecture at toy size (tests, CPU demos): one block per stage, inner width 16,
        T=4, 32x32 frames, a 16-d embedding space."""
        base = dict(num_frames=4, image_size=(32, 32), backbone="resnet_tiny", backbone_width_per_group=16,
                    embedding_dim=16, embedding_hidden=16)
        return cls(**{**base, **overrides})

    # --- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data dict (:func:`dataclasses.asdict`, image_size as a list; weights_only-safe)."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MANetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown MANet config fields {unknown}; is the checkpoint from a newer version?")
        return cls(**d)

    def replace(self, **changes: Any) -> "MANetConfig":
        return replace(self, **changes)


class TemporalSE(nn.Module):
    """Squeeze-and-excitation gate of one block input, per frame (IV-C, the first two steps of Eq. 1).

    ::

        x [B*T, C, H, W] -> z = mean_{h,w} x                    [B*T, C]   ("clip": mean over the T frames too)
                         -> s = sigmoid(expand(relu(reduce(z))))  [B*T, C], reduce: C -> C/ratio, expand: C/ratio -> C
                         -> x * s[..., None, None]

    Every gate lies in (0, 1). With ``expand``'s weights (and bias) at zero the gate is exactly 1/2
    for any input.
    """

    def __init__(self, channels: int, ratio: int = 4, *, squeeze: str = "frame", bias: bool = False) -> None:
        super().__init__()
        if squeeze not in SE_SQUEEZES:
            raise ValueError(f"squeeze must be one of {SE_SQUEEZES}, got {squeeze!r}")
        hidden = max(1, channels // ratio)
        self.reduce = nn.Linear(channels, hidden, bias=bias)
        self.expand = nn.Linear(hidden, channels, bias=bias)
        self.squeeze = squeeze

    def gates(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        """[B*T, C, H, W] -> s [B*T, C]."""
        z = x.mean(dim=(-2, -1))
        if self.squeeze == "clip":
            nt, c = z.shape
            z = z.reshape(nt // num_frames, num_frames, c).mean(dim=1, keepdim=True).expand(-1, num_frames, -1)
            z = z.reshape(nt, c)
        return torch.sigmoid(self.expand(torch.relu(self.reduce(z))))

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        return x * self.gates(x, num_frames)[..., None, None].to(x.dtype)

    def extra_repr(self) -> str:
        return f"squeeze={self.squeeze!r}"


@dataclass
class MANetOutput:
    """What :class:`MANet` returns.

    Attributes
    ----------
    logits : [B, num_classes]
    embedding : [B, embedding_dim] or None
        X_z, the clip in the joint embedding space (None without the head: ``embedding_weight=0``).
    features : [B, 2048]
        The time-averaged GAP feature, the layer before the classifier (the paper's t-SNE, Fig. 5).
    """

    logits: torch.Tensor
    embedding: torch.Tensor | None
    features: torch.Tensor


class MANet(nn.Module):
    """``MANet(cfg)(frames) -> MANetOutput``; ``model.loss(output, labels) -> MANetLossTerms``.

    Parameters
    ----------
    config : MANetConfig, optional
        Defaults to the paper's MA-52 configuration.
    label_vectors : Tensor [num_classes, embedding_dim], optional
        The joint-embedding targets (:func:`model.manet_loss.read_label_vectors`), also settable
        later with :meth:`set_label_vectors`. Kept as a non-persistent buffer: it follows the model
        to its device but is not part of ``state_dict()``, so a checkpoint is the same with or
        without them and inference never needs the file. Without them the embedding loss is off.
    """

    inputs: tuple[str, ...] = ("pixels",)
    """What the model reads per window: pixels only (no keypoints)."""

    def __init__(self, config: MANetConfig | None = None, *, label_vectors: torch.Tensor | None = None) -> None:
        super().__init__()
        cfg = config or MANetConfig()
        self.cfg = cfg
        gate = partial(TemporalSE, ratio=cfg.se_ratio, squeeze=cfg.se_squeeze, bias=cfg.se_bias) if cfg.use_se else None
        self.backbone = TSMResNet(cfg.backbone, shift_div=cfg.tsm_shift_div, block_interval=cfg.tsm_block_interval,
                                  width_per_group=cfg.backbone_width_per_group, block_gate=gate)
        c = self.backbone.out_channels
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(c, cfg.num_classes)
        heads: list[nn.Linear] = [self.classifier]
        if cfg.has_embedding_head:
            self.embedding_head = nn.Sequential(nn.Linear(c, cfg.embedding_hidden), nn.Tanh(),
                                                nn.Linear(cfg.embedding_hidden, cfg.embedding_dim))
            heads += [self.embedding_head[0], self.embedding_head[2]]
        for layer in heads:
            nn.init.normal_(layer.weight, std=cfg.head_init_std)
            nn.init.zeros_(layer.bias)
        self.register_buffer("label_vectors", None, persistent=False)
        self.set_label_vectors(label_vectors)

    def set_label_vectors(self, label_vectors: torch.Tensor | None) -> None:
        """Install (or with None remove) the label vectors q [num_classes, embedding_dim]."""
        if label_vectors is not None:
            expect = (self.cfg.num_classes, self.cfg.embedding_dim)
            if tuple(label_vectors.shape) != expect:
                raise ValueError(f"label vectors must be {list(expect)} (one row per class), "
                                 f"got {list(label_vectors.shape)}")
            ref = self.classifier.weight
            label_vectors = label_vectors.detach().to(device=ref.device, dtype=torch.float32)
        self.label_vectors = label_vectors

    @property
    def embedding_loss_active(self) -> bool:
        """Whether :meth:`loss` adds alpha * L_emb: an embedding head and label vectors."""
        return self.cfg.has_embedding_head and self.label_vectors is not None

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 3, H, W] -> per-frame GAP features X_t [B, T, 2048]."""
        return self.backbone(frames)[1]

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 3, H, W] -> the time-averaged feature [B, 2048] (before dropout and heads)."""
        return self.frame_features(frames).mean(dim=1)

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor | None = None) -> MANetOutput:
        """frames [B, T, 3, H, W] (any T, H, W; ImageNet-normalised) -> :class:`MANetOutput`.

        ``keypoints`` is ignored (MANet reads pixels only); it is accepted so that callers can call
        every model family as ``model(frames, keypoints)``.
        """
        if frames is None:
            raise ValueError("MANet needs frames [B, T, 3, H, W]")
        per_frame = self.frame_features(frames)                 # [B, T, 2048]
        x = self.dropout(per_frame)
        logits = self.classifier(x).mean(dim=1)                 # TSM consensus: average of per-frame scores
        embedding = None
        if hasattr(self, "embedding_head"):
            embedding = (self.embedding_head(x).mean(dim=1) if self.cfg.embed_before_average
                         else self.embedding_head(x.mean(dim=1)))
        return MANetOutput(logits=logits, embedding=embedding, features=per_frame.mean(dim=1))

    def loss(self, output: MANetOutput, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> MANetLossTerms:
        """Eq. 3 with this model's alpha and distance and its label vectors (off without them)."""
        return manet_loss(output, labels, label_vectors=self.label_vectors, alpha=self.cfg.embedding_weight,
                          distance=self.cfg.embedding_distance, label_smoothing=label_smoothing)
