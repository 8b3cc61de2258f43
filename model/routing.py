"""Entity-level adaptive routing between the ST and TS paths (paper III-C.4, Eqs. 13-15).

::

    x_st, x_ts [B, T, K, D]
      -> per entity i: r = R_i([x_st; x_ts]) + b_i          R_i: 2D -> D/2 -> 2   (Eq. 13)
                       R_i = Linear - LayerNorm - ReLU - Dropout - Linear
      -> alpha = softmax(r / tau_r)                           [B, T, K, 2]         (Eq. 14)
      -> fused = alpha_st * x_st + alpha_ts * x_ts            [B, T, K, D]         (Eq. 15)

Each entity has its own R_i and its own prior b_i (initialised to 0, so no path is preferred at the
start). For K=6, D=256 the module has 6 * (512*128 + 128 + 2*128 + 128*2 + 2 + 2) = 397,080
parameters; the paper rounds this to "approximately 0.5M".
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EntityRouter", "AverageFusion"]


class EntityRouter(nn.Module):
    """Per-entity router of Eqs. 13-15.

    Parameters
    ----------
    num_entities : int
        K.
    dim : int
        D of each path's output.
    hidden : int, optional
        Hidden width of R_i, D/2 by default.
    dropout : float
        Dropout inside R_i (0.1).
    temperature : float
        tau_r; lower values make the routing weights sharper. A plain attribute, so it can be
        annealed during training.
    """

    def __init__(self, num_entities: int, dim: int, *, hidden: int | None = None, dropout: float = 0.1,
                 temperature: float = 1.0) -> None:
        super().__init__()
        hidden = hidden or dim // 2
        self.temperature = temperature
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * dim, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True),
                          nn.Dropout(dropout), nn.Linear(hidden, 2))
            for _ in range(num_entities)
        )
        self.prior = nn.Parameter(torch.zeros(num_entities, 2))  # b_i, the entity-type prior

    def scores(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> torch.Tensor:
        """Routing logits r [B, T, K, 2] (Eq. 13)."""
        pair = torch.cat([x_st, x_ts], dim=-1)
        r = torch.stack([net(pair[:, :, i]) for i, net in enumerate(self.nets)], dim=2)
        return r + self.prior

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (fused [B, T, K, D], weights [B, T, K, 2] with weights[..., 0] for ST)."""
        # softmax in float32: under bf16 autocast the weights would otherwise not sum to 1 closely.
        alpha = torch.softmax(self.scores(x_st, x_ts).float() / self.temperature, dim=-1)
        a = alpha.to(x_st.dtype)
        return a[..., :1] * x_st + a[..., 1:] * x_ts, alpha


class AverageFusion(nn.Module):
    """The "no routing" ablation: both paths weighted 0.5 everywhere."""

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = x_st.new_full((*x_st.shape[:-1], 2), 0.5, dtype=torch.float32)
        return 0.5 * (x_st + x_ts), alpha
