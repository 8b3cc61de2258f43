"""Temporal aggregation ablations (paper Table IV, "Temporal Aggregation"): the dual paths replaced.

Each replaces the ST/TS paths and routing (Eqs. 9-15) by one temporal model applied to every entity
on its own, then averages over time and entities as Eq. 19 does::

    X [B, T, K, D] -> seq [B, T, K, D] -> f_entity = mean_{T,K} seq  [B, D]

- "avg_pool": seq = X (mean over T: order-free, no parameters);
- "max_pool": f_entity = mean_K max_T X (order-free, no parameters; seq = X);
- "lstm": one LSTM (D -> D, one layer) run over the T frames of each entity, shared by all entities;
- "temporal_transformer": Temporal-T alone (Eqs. 6-8), each entity's frames attend to each other.

None of them lets entities exchange information (the paper's argument for the dual paths), and
none has two paths, so MAC and routing do not apply.
"""

from __future__ import annotations

import torch
from torch import nn

from model.transformers import TemporalTransformer

__all__ = ["EntityAggregation", "AGGREGATIONS"]

AGGREGATIONS = ("avg_pool", "max_pool", "lstm", "temporal_transformer")


class EntityAggregation(nn.Module):
    """``X [B, T, K, D] -> (seq [B, T, K, D], f_entity [B, D])`` for one of :data:`AGGREGATIONS`."""

    def __init__(self, kind: str, dim: int, *, num_layers: int = 3, num_heads: int = 8, ffn_dim: int = 1024,
                 dropout: float = 0.1, attention_dropout: float | None = None) -> None:
        super().__init__()
        if kind not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {kind!r}")
        self.kind = kind
        if kind == "lstm":
            self.lstm = nn.LSTM(dim, dim, batch_first=True)
        elif kind == "temporal_transformer":
            self.temporal = TemporalTransformer(dim, num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim,
                                                dropout=dropout, attention_dropout=attention_dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, k, d = x.shape
        if self.kind == "avg_pool":
            return x, x.mean(dim=(1, 2))
        if self.kind == "max_pool":
            return x, x.amax(dim=1).mean(dim=1)
        if self.kind == "lstm":
            seq, _ = self.lstm(x.transpose(1, 2).reshape(b * k, t, d))  # [B*K, T, D]
            seq = seq.reshape(b, k, t, d).transpose(1, 2)
        else:
            seq = self.temporal(x)
        return seq, seq.mean(dim=(1, 2))
