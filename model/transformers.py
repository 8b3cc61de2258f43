"""Spatial-T and Temporal-T (paper III-C.1-2, Eqs. 3-8) and the position encodings they add.

Both are stacks of post-LN encoder layers (Eqs. 4-5)::

    X''  = LN(X'  + MHSA(X'))
    X^   = LN(X'' + FFN(X''))        FFN = Linear(D, 1024) - GELU - Dropout - Linear(1024, D)

applied to a different axis of the entity tensor X [B, T, K, D]:

    Spatial-T : each frame on its own,  sequences of K entities  -> view [B*T, K, D]
    Temporal-T: each entity on its own, sequences of T frames    -> view [B*K, T, D]

The position encoding is added once, to the input of the stack (Eqs. 3 and 6).

The attention is written out with :func:`torch.nn.functional.scaled_dot_product_attention` rather
than ``nn.TransformerEncoderLayer`` so that the layer is exactly Eqs. 4-5 in train and eval mode
(``nn.TransformerEncoderLayer`` switches to a fused kernel in eval mode), and so that
``FlopCounterMode`` sees every matmul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.taxonomy import EntityLayout

__all__ = [
    "PostLNEncoderLayer", "SpatialTransformer", "TemporalTransformer", "SpatialPositionEncoding",
    "sinusoidal_encoding", "ANATOMICAL_LEVEL", "ENTITY_SIDE",
]

ANATOMICAL_LEVEL: dict[str, int] = {"head": 0, "face": 0, "torso": 1, "left hand": 2, "right hand": 2, "lower body": 2}
"""Depth of each entity in the head -> torso -> limbs hierarchy that SPE encodes (III-C.1)."""

ENTITY_SIDE: dict[str, int] = {"head": 1, "face": 1, "torso": 1, "left hand": 0, "right hand": 2, "lower body": 1}
"""0 = person's left, 1 = midline, 2 = person's right."""


class PostLNEncoderLayer(nn.Module):
    """One post-LN self-attention layer (Eqs. 4-5 / 7-8).

    ::

        x [N, L, D] -> [N, L, D]     (N sequences of length L)
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float,
                 attention_dropout: float | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Dropout on the attention weights (softmax(QK^T / sqrt(d)) before multiplying V), in train mode
        # only; the sub-layer outputs and the FFN have their own dropout (``dropout``).
        self.attn_dropout = dropout if attention_dropout is None else attention_dropout
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, length, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop1(self.attention(x)))
        return self.norm2(x + self.drop2(self.ffn(x)))


def sinusoidal_encoding(length: int, dim: int, *, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fixed sine/cosine table of "Attention is all you need", [length, dim].

    Even channels carry sin(pos / 10000^(2i/D)), odd channels the cosine.
    """
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.to(dtype)


class SpatialPositionEncoding(nn.Module):
    """SPE of Eq. 3: where each entity sits in the body, not which entity it is.

    The paper describes SPE as encoding "relative spatial positions of entities based on their
    anatomical hierarchy (head -> torso -> limbs)" without a formula. Reading used here: the sum of
    a learnable embedding of the entity's hierarchy level (:data:`ANATOMICAL_LEVEL`) and a learnable
    embedding of its side (:data:`ENTITY_SIDE`). Left and right hand share their level and differ
    only by side, so the encoding is structural (identity is already carried by the entity
    embedding p_i of Eq. 2) and a horizontal flip maps one hand's code onto the other's.
    """

    def __init__(self, layout: EntityLayout, dim: int) -> None:
        super().__init__()
        # An entity outside the anatomical tables (the whole-frame entity of entity_source="global")
        # sits at level 0 on the midline.
        self.register_buffer("level", torch.tensor([ANATOMICAL_LEVEL.get(n, 0) for n in layout.names]),
                             persistent=False)
        self.register_buffer("side", torch.tensor([ENTITY_SIDE.get(n, 1) for n in layout.names]), persistent=False)
        self.level_embed = nn.Embedding(max(ANATOMICAL_LEVEL.values()) + 1, dim)
        self.side_embed = nn.Embedding(3, dim)
        nn.init.trunc_normal_(self.level_embed.weight, std=0.02)
        nn.init.trunc_normal_(self.side_embed.weight, std=0.02)

    def forward(self) -> torch.Tensor:
        """-> [K, D]."""
        return self.level_embed(self.level) + self.side_embed(self.side)


class _EntityAxisTransformer(nn.Module):
    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float,
                 attention_dropout: float | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(PostLNEncoderLayer(dim, num_heads, ffn_dim, dropout, attention_dropout)
                                    for _ in range(num_layers))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class SpatialTransformer(_EntityAxisTransformer):
    """Spatial-T: attention across the K entities of each frame.

    ::

        X [B, T, K, D] + SPE [K, D] -> view [B*T, K, D] -> layers -> [B, T, K, D]
    """

    def __init__(self, layout: EntityLayout, dim: int, num_layers: int = 3, num_heads: int = 8,
                 ffn_dim: int = 1024, dropout: float = 0.1, attention_dropout: float | None = None) -> None:
        super().__init__(dim, num_layers, num_heads, ffn_dim, dropout, attention_dropout)
        self.spe = SpatialPositionEncoding(layout, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, k, d = x.shape
        x = x + self.spe().to(x.dtype)
        return self._run(x.reshape(b * t, k, d)).reshape(b, t, k, d)


class TemporalTransformer(_EntityAxisTransformer):
    """Temporal-T: attention across the T frames of each entity.

    ::

        X [B, T, K, D] -> [B, K, T, D] + TPE [T, D] (sinusoidal) -> view [B*K, T, D]
          -> layers -> [B, T, K, D]
    """

    def __init__(self, dim: int, num_layers: int = 3, num_heads: int = 8, ffn_dim: int = 1024,
                 dropout: float = 0.1, attention_dropout: float | None = None) -> None:
        super().__init__(dim, num_layers, num_heads, ffn_dim, dropout, attention_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, k, d = x.shape
        x = x.transpose(1, 2) + sinusoidal_encoding(t, d, device=x.device, dtype=x.dtype)
        return self._run(x.reshape(b * k, t, d)).reshape(b, k, t, d).transpose(1, 2)
