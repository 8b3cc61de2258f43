"""MMN, "Motion Matters": a motion-guided modulation network on skeleton sequences alone.

Seed paper: Gu et al., "Motion Matters: Motion-guided Modulation Network for Skeleton-based
Micro-Action Recognition" (ACM MM 2025; DESIGN.md section 11: 1.23 M parameters, 7.15 ms per clip,
MA-52 Top-1 61.33 joint, 62.71 / F1_mean 65.34 joint + bone). Written from the paper's description and
the facts its public code documents (read, not copied); every open point is a :class:`MMNConfig` field.

::

    keypoints [B, T, J, 3]  (x, y in any pixels, confidence; J >= 25: BODY_25 first, extra points dropped)
      | per-window normalisation: detected joints (conf > theta) of the whole window mapped into
      | [-1, 1] (isotropic: one scale for x and y, so shapes keep their aspect), undetected -> 0
      | training only: random affine per sequence + temporal jitter (model.skeleton_augment)
      | stream input: joint = (x, y[, c]);  bone = joint[v] - joint[parent(v)]   (BODY_25 tree)
      | time padded (replicate) to a multiple of 2^(S-1), S = number of stages
      v
    embedding: point-wise MLP  C_in -> 2 C_in -> 3 C_in -> D          x [B, D, T, V]
      + skeletal-temporal positional embedding  P[c, t, v] = sin/cos(t)[c] * E[c, v]   (E learnable)
      v
    multi-scale inputs  s_0 = x,  s_i = BN(Conv_(k,1), stride 2 in time (s_{i-1}))   [B, D, T / 2^i, V]
    stage i: depth_i MSM/MTM formers on s_i  ->  f_i                                  [B, D, T / 2^i, V]
      former (pre-LN, residual, drop-path):
        h = Linear(LN(x)) split into  g (D/4) | u (D/4) | m_in (D/2)
        GConv:  g_k A_k (one learnable V x V adjacency per head k)              -> X_g [B, D/4, T, V]
        TConv:  grouped Conv (kernel_size x 1) over time on u                   -> X_t [B, D/4, T, V]
        motion: m = GELU(BN(depthwise Conv_(3,1)(diff_t(m_in))))               -> m   [B, D/2, T, V]
        MSM:  (gamma_s, beta_s) = BN(tanh(Linear(A_m m)))  A_m learnable V x V (identity at init)
              X_g' = norm_TV(X_g) (1 + gamma_s) + beta_s
        MTM:  (gamma_t, beta_t) = BN(tanh(Conv_(3,1)(m)));  X_t' = norm_TV(X_t) (1 + gamma_t) + beta_t
        gate w = sigmoid(Conv(ReLU(BN(Conv([X_t'; X_g'; m])))))  [B, 3, T, V]
        x = x + DropPath(Linear(GELU(BN(Conv_1x1([w0 X_t'; w1 X_g'; w2 m])))));  x = x + DropPath(MLP(LN(x)))
    motion consistency learning (MCL) over the stacked formers' outputs f_0 .. f_{S-1}:
        every f_i brought to T / 2^(S-1) (Conv kernel = stride = 2^(S-1-i), BN, ReLU);
        per-position softmax weights over the S scales from a 1x1 gating net; fused = sum_i w_i f_i,
        dropout, + Conv_1x1(f_{S-1})                                          z [B, D, T/2^(S-1), V]
    head: mean over (T, V) -> Dropout(0.1) -> Linear(D, num_classes)      -> stream logits [B, C]
    2S score fusion (streams joint + bone): p = sum_s w_s softmax(l_s) / sum_s w_s, logits = log p

``MMN(config)(keypoints) -> logits [B, num_classes]`` (``return_output=True`` gives :class:`MMNOutput`
with each stream's logits and features for the loss). Any T works (the sinusoid follows the input).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.losses import LossTerms
from model.skeleton_augment import random_affine, temporal_jitter
from model.taxonomy import BODY25_JOINTS, NUM_BODY25

__all__ = ["MMNConfig", "MMN", "MMNOutput", "BODY25_PARENTS", "normalise_window", "bone_vectors"]

# Parent of each BODY_25 joint (OpenPose's tree, rooted at MidHip) for the bone stream.
_PARENT_NAMES = {
    "Nose": "Neck", "Neck": "MidHip", "RShoulder": "Neck", "RElbow": "RShoulder", "RWrist": "RElbow",
    "LShoulder": "Neck", "LElbow": "LShoulder", "LWrist": "LElbow", "MidHip": "MidHip", "RHip": "MidHip",
    "RKnee": "RHip", "RAnkle": "RKnee", "LHip": "MidHip", "LKnee": "LHip", "LAnkle": "LKnee", "REye": "Nose",
    "LEye": "Nose", "REar": "REye", "LEar": "LEye", "LBigToe": "LAnkle", "LSmallToe": "LAnkle", "LHeel": "LAnkle",
    "RBigToe": "RAnkle", "RSmallToe": "RAnkle", "RHeel": "RAnkle",
}
BODY25_PARENTS: tuple[int, ...] = tuple(BODY25_JOINTS.index(_PARENT_NAMES[n]) for n in BODY25_JOINTS)
"""``BODY25_PARENTS[v]``: parent joint of v (MidHip is the root, its bone is 0)."""

_CHOICES = {
    "normalisation": ("isotropic", "per_axis"),
    "positional": ("stpe", "time", "joint", "none"),
    "fusion": ("mcl", "last"),
    "scale_input": ("embedding", "hierarchical"),
}


@dataclass(frozen=True)
class MMNConfig:
    """Hyper-parameters of MMN; defaults are the paper's MA-52 configuration (public code's
    ``MA52_J`` config: 4 stages of 3 formers at D = 96, 4 heads, kernel 3, MLP ratio 2, drop-path 0.3,
    head dropout 0.1, T = 64) on our BODY_25 input. docs/model.md lists every open choice."""

    # --- task and input ----------------------------------------------------------------------
    num_classes: int = 52
    num_frames: int = 64
    """T of the paper (informative: any T is accepted; the window plan decides)."""
    num_joints: int = NUM_BODY25
    """V: BODY_25 (the paper's code uses 44 points of a 136-point layout our pose stage does not give)."""
    use_confidence: bool = False
    """Feed the confidence as a third channel (the paper feeds (x, y) only)."""
    keypoint_threshold: float = 0.3
    """Joints with confidence <= this are undetected: excluded from the normalisation, set to 0."""
    normalisation: str = "isotropic"
    """Per-window scaling into [-1, 1]: "isotropic" (one scale, centred) or "per_axis" (x and y min-max
    separately, the paper code's reading). Both are invariant to the crop and resize of a window."""
    streams: tuple[str, ...] = ("joint",)
    """("joint",), ("bone",) or ("joint", "bone") (2S: score fusion of two networks)."""
    stream_weights: tuple[float, ...] = (1.0, 1.0)
    """Weights of the 2S score fusion (one per stream; equal in the paper's 2S row)."""

    # --- network -----------------------------------------------------------------------------
    embed_dim: int = 96
    depths: tuple[int, ...] = (3, 3, 3, 3)
    num_heads: int = 4
    kernel_size: int = 3
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    drop_path: float = 0.3
    """Largest stochastic-depth rate (linear from 0 over the formers)."""
    head_dropout: float = 0.1

    # --- ablation switches (recipes.mmn_rows: Tables 3-5) ----------------------------------------
    use_msm: bool = True
    """Motion-guided skeletal modulation of the GConv branch (off: X_g unmodulated)."""
    use_mtm: bool = True
    """Motion-guided temporal modulation of the TConv branch (off: X_t unmodulated)."""
    fusion: str = "mcl"
    """"mcl": motion consistency learning over the stages' outputs; "last": the last stage alone (needs
    ``scale_input="hierarchical"``: otherwise the earlier stages would feed nothing)."""
    positional: str = "stpe"
    """"stpe" (sinusoid(t) x learnable joint embedding), "time" (sinusoid only), "joint" (learnable
    joint embedding only), "none"."""
    scale_input: str = "embedding"
    """What stage i reads: "embedding" (the embedding downsampled i times, as the public code) or
    "hierarchical" (the previous stage's output downsampled)."""
    fuse_modulated: bool = True
    """Fuse the modulated branch outputs (our reading); False fuses the unmodulated X_t, X_g and lets the
    modulation act through the gate only (the public code)."""
    consistency_weight: float = 0.0
    """Weight of an auxiliary consistency term: mean over stages of 1 - cos(pooled f_i, pooled fused
    feature, detached). 0 (default) = the paper's loss, cross-entropy only (MCL is a fusion module)."""

    # --- augmentation (training mode only, applied to the normalised window) --------------------
    augment: bool = True
    rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translation: float = 0.1
    temporal_jitter: int = 1
    """Largest shift of a time index (frames of the window); 0: off."""

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        object.__setattr__(self, "streams", tuple(self.streams))
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "stream_weights", tuple(float(w) for w in self.stream_weights))
        object.__setattr__(self, "scale_range", tuple(self.scale_range))
        if not self.streams or set(self.streams) - {"joint", "bone"} or len(set(self.streams)) != len(self.streams):
            raise ValueError(f"streams must be ('joint',), ('bone',) or ('joint', 'bone'), got {self.streams}")
        if len(self.stream_weights) < len(self.streams) or any(w < 0 for w in self.stream_weights):
            raise ValueError("stream_weights needs one non-negative weight per stream")
        if self.embed_dim % 4 or (self.embed_dim // 4) % self.num_heads:
            raise ValueError(f"embed_dim/4 ({self.embed_dim / 4}) must be divisible by num_heads ({self.num_heads})")
        if not self.depths or min(self.depths) < 1:
            raise ValueError("depths must be a non-empty tuple of positive ints")
        if self.fusion == "last" and self.scale_input == "embedding" and len(self.depths) > 1:
            raise ValueError("fusion 'last' with scale_input 'embedding' would leave every stage but the last unused; "
                             "use scale_input='hierarchical' (the stages stacked) without MCL")
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if self.num_joints != NUM_BODY25:
            raise ValueError(f"num_joints must be {NUM_BODY25} (BODY_25)")

    @property
    def in_channels(self) -> int:
        return 3 if self.use_confidence else 2

    @property
    def time_multiple(self) -> int:
        """T is padded to a multiple of this (2^(S-1), the coarsest stage's stride)."""
        return 2 ** (len(self.depths) - 1)

    # --- presets ---------------------------------------------------------------------------------
    @classmethod
    def ma52(cls, **overrides: Any) -> "MMNConfig":
        """The paper's MA-52 joint-stream model (the defaults)."""
        return cls(**overrides)

    @classmethod
    def ma52_2s(cls, **overrides: Any) -> "MMNConfig":
        """Joint + bone streams with score fusion (the paper's 2S row: Top-1 62.71, F1_mean 65.34)."""
        return cls(**{"streams": ("joint", "bone"), **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> "MMNConfig":
        """Same architecture at toy size (tests, CPU demos): D = 32, 2 stages of 1 former, T = 8."""
        return cls(**{"embed_dim": 32, "depths": (1, 1), "num_frames": 8, "drop_path": 0.1, **overrides})

    # --- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MMNConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; is the checkpoint from a newer version?")
        return cls(**d)

    def replace(self, **changes: Any) -> "MMNConfig":
        return replace(self, **changes)


@dataclass
class MMNOutput:
    """logits [B, C] (fused over streams); stream_logits {stream: [B, C]}; features [B, D] (first
    stream's pooled MCL output); consistency: the auxiliary term (0 when off)."""

    logits: torch.Tensor
    stream_logits: dict[str, torch.Tensor]
    features: torch.Tensor
    consistency: torch.Tensor
    routing: None = None  # no entity routing (the recognition stage's optional column stays null)


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------


def normalise_window(keypoints: torch.Tensor, *, threshold: float, mode: str = "isotropic") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window normalisation. keypoints [B, T, V, >=3] -> (xy [B, T, V, 2] in [-1, 1], mask [B, T, V]).

    The box of all detected joints of the window (conf > threshold) maps to [-1, 1]: centre
    c = (min + max) / 2, half-size h = max over axes of (max - min) / 2 ("isotropic") or per axis
    ("per_axis"); x_n = (x - c) / h. Undetected joints are 0; a window with none is all 0.
    """
    xy = keypoints[..., :2].float()
    mask = (keypoints[..., 2] > threshold).float()
    big = torch.finfo(xy.dtype).max
    m = mask[..., None] > 0
    lo = torch.where(m, xy, xy.new_full((), big)).amin(dim=(1, 2), keepdim=True)
    hi = torch.where(m, xy, xy.new_full((), -big)).amax(dim=(1, 2), keepdim=True)
    any_valid = mask.flatten(1).amax(1).view(-1, 1, 1, 1) > 0
    lo = torch.where(any_valid, lo, torch.zeros_like(lo))
    hi = torch.where(any_valid, hi, torch.zeros_like(hi))
    centre = (lo + hi) / 2
    half = (hi - lo) / 2
    if mode == "isotropic":
        half = half.amax(dim=-1, keepdim=True).expand_as(half)
    half = half.clamp_min(1e-6)
    out = torch.where(m, (xy - centre) / half, torch.zeros_like(xy))
    return out, mask


def bone_vectors(xy: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bone[v] = xy[v] - xy[parent(v)] where both joints are detected, else 0. xy [B, T, V, 2]."""
    parents = torch.tensor(BODY25_PARENTS, device=xy.device)
    both = mask * mask[..., parents]
    return (xy - xy[..., parents, :]) * both[..., None], both


# --------------------------------------------------------------------------------------------------
# Network parts
# --------------------------------------------------------------------------------------------------


class DropPath(nn.Module):
    """Stochastic depth per sample (train mode only): x * Bernoulli(1 - p) / (1 - p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


def _instance_norm_tv(x: torch.Tensor) -> torch.Tensor:
    """Standardise each channel over (T, V): [B, C, T, V]."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=x.shape[2] * x.shape[3] > 1)
    return (x - mean) / (std + 1e-6)


class MotionGuidedFormer(nn.Module):
    """One MSM/MTM former block (module docstring): x [B, D, T, V] -> [B, D, T, V]."""

    def __init__(self, cfg: MMNConfig, drop_path: float) -> None:
        super().__init__()
        d, v, heads = cfg.embed_dim, cfg.num_joints, cfg.num_heads
        q, half = d // 4, d // 2
        self.cfg = cfg
        self.norm1 = nn.LayerNorm(d)
        self.mapping = nn.Linear(d, d)
        self.gconv = nn.Parameter(torch.randn(heads, v, v) * 0.02)  # one learnable adjacency per head
        self.tconv = nn.Conv2d(q, q, (cfg.kernel_size, 1), padding=(cfg.kernel_size // 2, 0), groups=heads)
        self.motion = nn.Sequential(nn.Conv2d(half, half, (3, 1), padding=(1, 0), groups=half, bias=False),
                                    nn.BatchNorm2d(half), nn.GELU())
        if cfg.use_msm:
            self.msm_adjacency = nn.Parameter(torch.eye(v))
            self.msm_fc = nn.Linear(half, 2 * q)
            self.msm_bn = nn.BatchNorm2d(2 * q)
        if cfg.use_mtm:
            self.mtm = nn.Sequential(nn.Conv2d(half, 2 * q, (3, 1), padding=(1, 0)), nn.Tanh(), nn.BatchNorm2d(2 * q))
        self.gate = nn.Sequential(nn.Conv2d(d, q, 1, bias=False), nn.BatchNorm2d(q), nn.ReLU(),
                                  nn.Conv2d(q, 3, 1, bias=False), nn.Sigmoid())
        self.aggregate = nn.Sequential(nn.Conv2d(d, d, 1, bias=False), nn.BatchNorm2d(d), nn.GELU())
        self.proj = nn.Linear(d, d)
        self.proj_drop = nn.Dropout(cfg.dropout)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(d)
        hidden = int(cfg.mlp_ratio * d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, d),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, t, v = x.shape
        q = d // 4
        res = x.permute(0, 2, 3, 1)  # [B, T, V, D]
        h = self.mapping(self.norm1(res)).permute(0, 3, 1, 2)  # [B, D, T, V]
        g, u, m_in = torch.split(h, [q, q, d // 2], dim=1)
        heads = self.gconv.shape[0]
        g = g.reshape(b, heads, q // heads, t, v)
        x_g = torch.einsum("bhctu,hvu->bhctv", g, self.gconv).reshape(b, q, t, v)  # GConv
        x_t = self.tconv(u)  # TConv
        diff = torch.diff(m_in, dim=2) if t > 1 else torch.zeros_like(m_in)[:, :, :0]
        diff = torch.cat([diff, diff[:, :, -1:] if t > 1 else torch.zeros_like(m_in)], dim=2)  # replicate last
        m = self.motion(diff)  # motion branch [B, D/2, T, V]
        x_gm, x_tm = x_g, x_t
        if self.cfg.use_msm:  # MSM: graph-propagated motion -> (gamma_s, beta_s)
            z = torch.einsum("vw,bctw->btvc", self.msm_adjacency, m)
            z = self.msm_bn(torch.tanh(self.msm_fc(z)).permute(0, 3, 1, 2))
            gamma, beta = z.chunk(2, dim=1)
            x_gm = _instance_norm_tv(x_g) * (1 + gamma) + beta
        if self.cfg.use_mtm:  # MTM: temporal conv of motion -> (gamma_t, beta_t)
            gamma, beta = self.mtm(m).chunk(2, dim=1)
            x_tm = _instance_norm_tv(x_t) * (1 + gamma) + beta
        w = self.gate(torch.cat([x_tm, x_gm, m], dim=1))  # [B, 3, T, V]
        a_t, a_g = (x_tm, x_gm) if self.cfg.fuse_modulated else (x_t, x_g)
        agg = self.aggregate(torch.cat([a_t * w[:, 0:1], a_g * w[:, 1:2], m * w[:, 2:3]], dim=1))
        out = res + self.drop_path(self.proj_drop(self.proj(agg.permute(0, 2, 3, 1))))
        out = out + self.drop_path(self.mlp(self.norm2(out)))
        return out.permute(0, 3, 1, 2)


class MotionConsistencyLearning(nn.Module):
    """Gated fusion of the S stages' outputs at the coarsest time scale (module docstring)."""

    def __init__(self, d: int, scales: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        for i in range(scales):
            k = 2 ** (scales - 1 - i)
            layers = [nn.Conv2d(d, d, (k, 1), stride=(k, 1))] if k > 1 else []
            self.down.append(nn.Sequential(*layers, nn.BatchNorm2d(d), nn.ReLU()))
        self.gate = nn.Sequential(nn.Conv2d(d * scales, d, 1), nn.BatchNorm2d(d), nn.ReLU(), nn.Conv2d(d, scales, 1))
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Conv2d(d, d, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        aligned = [down(f) for down, f in zip(self.down, feats)]
        w = self.gate(torch.cat(aligned, dim=1)).softmax(dim=1)  # [B, S, T', V]
        fused = sum(w[:, i:i + 1] * a for i, a in enumerate(aligned))
        return self.dropout(fused) + self.residual(aligned[-1])


def _sinusoid(t: int, d: int, device) -> torch.Tensor:
    """[T, D]: sin on even channels, cos on odd ones, wavelengths up to 10000 (Transformer encoding)."""
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(t, d, device=device)
    out[:, 0::2] = torch.sin(pos * div)
    out[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return out


class MMNStream(nn.Module):
    """One stream (joint or bone): stream input [B, T, V, C_in] -> (logits [B, C], pooled [B, D], aux)."""

    def __init__(self, cfg: MMNConfig) -> None:
        super().__init__()
        c, d, v = cfg.in_channels, cfg.embed_dim, cfg.num_joints
        self.cfg = cfg
        self.embed = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, 3 * c), nn.GELU(),
                                   nn.Linear(3 * c, d))
        if cfg.positional in ("stpe", "joint"):
            self.joint_embedding = nn.Parameter(torch.randn(d, v) * 0.02)
        stages = len(cfg.depths)
        rates = torch.linspace(0, cfg.drop_path, sum(cfg.depths)).tolist()
        self.downsample = nn.ModuleList(
            nn.Sequential(nn.Conv2d(d, d, (cfg.kernel_size, 1), stride=(2, 1), padding=(cfg.kernel_size // 2, 0),
                                    padding_mode="replicate"), nn.BatchNorm2d(d)) for _ in range(stages - 1))
        self.stages = nn.ModuleList()
        k = 0
        for depth in cfg.depths:
            self.stages.append(nn.Sequential(*[MotionGuidedFormer(cfg, rates[k + j]) for j in range(depth)]))
            k += depth
        if cfg.fusion == "mcl":
            self.mcl = MotionConsistencyLearning(d, stages)
        self.head_dropout = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(d, cfg.num_classes)

    def positional(self, t: int, device) -> torch.Tensor | None:
        """[D, T, V] (or broadcastable) skeletal-temporal positional embedding."""
        kind = self.cfg.positional
        if kind == "none":
            return None
        if kind == "joint":
            return self.joint_embedding[:, None, :]
        time = _sinusoid(t, self.cfg.embed_dim, device).T[:, :, None]  # [D, T, 1]
        if kind == "time":
            return time
        return time * self.joint_embedding[:, None, :]  # outer product per channel: [D, T, V]

    def forward(self, x: torch.Tensor):
        h = self.embed(x).permute(0, 3, 1, 2)  # [B, D, T, V]
        pe = self.positional(h.shape[2], h.device)
        if pe is not None:
            h = h + pe.to(h.dtype)
        feats = []
        s = h
        for i, stage in enumerate(self.stages):
            if i:
                s = self.downsample[i - 1](feats[-1] if self.cfg.scale_input == "hierarchical" else s)
            feats.append(stage(s))
        z = self.mcl(feats) if self.cfg.fusion == "mcl" else feats[-1]
        pooled = z.mean(dim=(2, 3))
        aux = pooled.new_zeros(())
        if self.cfg.consistency_weight > 0:
            target = pooled.detach()
            aux = torch.stack([1 - F.cosine_similarity(f.mean(dim=(2, 3)), target, dim=-1).mean() for f in feats]).mean()
        return self.head(self.head_dropout(pooled)), pooled, aux


class MMN(nn.Module):
    """``MMN(config)(keypoints [B, T, J, 3]) -> logits [B, num_classes]`` (module docstring).

    In training mode the normalised window is augmented (random affine per sequence, temporal
    jitter; ``config.augment``); eval mode is deterministic.
    """

    def __init__(self, config: MMNConfig | None = None) -> None:
        super().__init__()
        self.cfg = config or MMNConfig()
        self.streams = nn.ModuleDict({s: MMNStream(self.cfg) for s in self.cfg.streams})
        self.generator: torch.Generator | None = None  # optional: seeds the augmentation (tests)

    def prepare(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """keypoints [B, T, J>=25, >=3] -> (normalised, possibly augmented xy [B, T, V, 2], mask [B, T, V],
        confidence of detected joints [B, T, V])."""
        cfg = self.cfg
        if keypoints.ndim != 4 or keypoints.shape[2] < cfg.num_joints or keypoints.shape[3] < 3:
            raise ValueError(f"MMN needs keypoints [B, T, J>={cfg.num_joints}, 3], got {list(keypoints.shape)}")
        kp = keypoints[:, :, : cfg.num_joints]
        xy, mask = normalise_window(kp, threshold=cfg.keypoint_threshold, mode=cfg.normalisation)
        if self.training and cfg.augment:
            xy = random_affine(xy, mask, rotation_deg=cfg.rotation_deg, scale=cfg.scale_range,
                               translation=cfg.translation, generator=self.generator)
            if cfg.temporal_jitter > 0:
                both = temporal_jitter(torch.cat([xy, mask[..., None], kp[..., 2:3].float()], -1),
                                       cfg.temporal_jitter, generator=self.generator)
                return both[..., :2], both[..., 2], both[..., 3] * both[..., 2]
        return xy, mask, kp[..., 2].float() * mask

    def stream_inputs(self, xy: torch.Tensor, mask: torch.Tensor, conf: torch.Tensor) -> dict[str, torch.Tensor]:
        """{stream: [B, T', V, C_in]} with T padded (replicate) to a multiple of 2^(S-1)."""
        out = {}
        for s in self.cfg.streams:
            feat, m = (xy, mask) if s == "joint" else bone_vectors(xy, mask)
            if self.cfg.use_confidence:
                feat = torch.cat([feat, (conf * (m > 0)).unsqueeze(-1)], -1)
            pad = (-feat.shape[1]) % self.cfg.time_multiple
            if pad:
                feat = torch.cat([feat, feat[:, -1:].expand(-1, pad, -1, -1)], dim=1)
            out[s] = feat
        return out

    def forward(self, keypoints: torch.Tensor, *, return_output: bool = False):
        xy, mask, conf = self.prepare(keypoints)
        inputs = self.stream_inputs(xy, mask, conf)
        stream_logits, features, aux = {}, None, []
        for name, stream in self.streams.items():
            logits, pooled, a = stream(inputs[name])
            stream_logits[name] = logits
            features = pooled if features is None else features
            aux.append(a)
        if len(stream_logits) == 1:
            logits = next(iter(stream_logits.values()))
        else:  # 2S score fusion: log of the weighted mean of the streams' probabilities
            w = torch.tensor(self.cfg.stream_weights[: len(stream_logits)], device=xy.device)
            w = w / w.sum().clamp_min(1e-12)
            probs = sum(wi * l.float().softmax(-1) for wi, l in zip(w, stream_logits.values()))
            logits = probs.clamp_min(1e-12).log()
        if not return_output:
            return logits
        return MMNOutput(logits=logits, stream_logits=stream_logits, features=features,
                         consistency=torch.stack(aux).mean())

    def loss(self, output: MMNOutput, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> LossTerms:
        """Sum over streams of cross-entropy (each stream learns on its own, as separately trained streams
        would) + consistency_weight * the auxiliary term; ``mac`` of LossTerms holds that term."""
        ce = sum(F.cross_entropy(l.float(), labels, label_smoothing=label_smoothing)
                 for l in output.stream_logits.values())
        aux = output.consistency.float()
        return LossTerms(total=ce + self.cfg.consistency_weight * aux, ce=ce, mac=aux)
