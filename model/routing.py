"""Entity-level adaptive routing between the ST and TS paths (paper III-C.4, Eqs. 13-15).

::

    x_st, x_ts [B, T, K, D]
      -> per entity i: r = R_i([x_st; x_ts]) + b_i          R_i: 2D -> D/2 -> 2   (Eq. 13)
                       R_i = Linear - LayerNorm - ReLU - Dropout - Linear
      -> alpha = softmax(r / tau_r)                           [B, T, K, 2]         (Eq. 14)
      -> fused = alpha_st * x_st + alpha_ts * x_ts            [B, T, K, D]         (Eq. 15)

Each entity has its own R_i and its own prior b_i (initialised to 0). R_i's output layer also starts
at zero (weights and bias), so at initialisation r = 0 and alpha is exactly (0.5, 0.5) for every
input: no path is preferred at the start, not merely on average. (With the usual random output
layer alpha would start input-dependent around 0.5.) The output layer gets gradient from the first
step; the hidden layer from the second, once the output weights are non-zero. For K=6, D=256 the module has 6 * (512*128 + 128 + 2*128 + 128*2 + 2 + 2) = 397,080
parameters; the paper rounds this to "approximately 0.5M".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EntityRouter", "AverageFusion", "ConcatFusion"]


class EntityRouter(nn.Module):
    """Per-entity router of Eqs. 13-15.

    The K networks R_i run as one batched computation: their weights are stacked along a leading
    entity axis (``w1`` [K, 2D, H], ``w2`` [K, H, 2], ...) and applied with ``einsum``, so routing
    costs a few kernels instead of K small ones - at toy sizes a Python loop over entities would
    cost more than both paths together.

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
        k = num_entities
        self.w1 = nn.Parameter(torch.empty(k, 2 * dim, hidden))
        self.b1 = nn.Parameter(torch.empty(k, hidden))
        self.ln_weight = nn.Parameter(torch.ones(k, hidden))
        self.ln_bias = nn.Parameter(torch.zeros(k, hidden))
        self.dropout = nn.Dropout(dropout)
        self.w2 = nn.Parameter(torch.empty(k, hidden, 2))
        self.b2 = nn.Parameter(torch.empty(k, 2))
        self.prior = nn.Parameter(torch.zeros(k, 2))  # b_i, the entity-type prior, zero at the start
        # Hidden layer: nn.Linear's default initialisation, per entity: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = (2 * dim) ** -0.5
        nn.init.uniform_(self.w1, -bound, bound)
        nn.init.uniform_(self.b1, -bound, bound)
        # Output layer: zero, so routing starts at exactly 0.5 / 0.5 for any input (module docstring).
        nn.init.zeros_(self.w2)
        nn.init.zeros_(self.b2)

    def scores(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> torch.Tensor:
        """Routing logits r [B, T, K, 2] (Eq. 13): Linear - LayerNorm - ReLU - Dropout - Linear, + b_i."""
        pair = torch.cat([x_st, x_ts], dim=-1)  # [B, T, K, 2D]
        h = torch.einsum("btkc,kch->btkh", pair, self.w1.to(pair.dtype)) + self.b1.to(pair.dtype)
        h = F.layer_norm(h, h.shape[-1:]) * self.ln_weight.to(h.dtype) + self.ln_bias.to(h.dtype)
        h = self.dropout(F.relu(h))
        r = torch.einsum("btkh,kho->btko", h, self.w2.to(h.dtype)) + self.b2.to(h.dtype)
        return r + self.prior.to(r.dtype)

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


class ConcatFusion(nn.Module):
    """The "simple concatenation" alternative of III-C.4: fused = Linear(2D -> D)([x_st; x_ts]).

    The same linear map for every entity (no per-entity weights, no routing weights), so the entity
    features keep width D and the head is unchanged.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.proj(torch.cat([x_st, x_ts], dim=-1)), None
