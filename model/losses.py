"""Mutual Action Consistency loss (paper III-D, Eqs. 16-17) and the training objective (Eq. 21).

Reading of Eq. 16. For sample b, entity i and time t::

    L[b, i, t] = -log  exp(sim(z_st[b,i,t], z_ts[b,i,t]) / tau)
                       ---------------------------------------------------
                       sum_{j=1..T} exp(sim(z_st[b,i,t], z_ts[b,i,j]) / tau)

- the anchor is the ST output of (i, t), the positive the TS output of the *same* entity at the
  *same* time, the negatives the TS outputs of the same entity at the other T-1 times (the
  denominator runs over all T, positive included, as written);
- it is one-directional, ST -> TS, as written (no symmetric TS -> ST term);
- other entities and other samples are not negatives: the paper contrasts "different temporal
  positions" only, which is what makes it a *temporal* coherence constraint per entity;
- sim is the cosine similarity (z are the l2-normalised raw path outputs), tau = 0.07.

Eq. 17 weights each term by the entity's keypoint confidence c[b, t, i] and divides by the sum of
the weights. With a batch, numerator and denominator are both summed over the whole batch (one
pooled weighted mean rather than a mean of per-sample means), so a sample whose entities are all
invisible contributes nothing rather than dividing by zero. The confidences are treated as
constants (no gradient). ``confidence_weighting=False`` sets every c to 1 (Table III "w/o confidence
weighting").

Granularity (Table IV "Entity Temporal Granularity"). The above is "frame"-level MAC. The paper's
table reports a "video-level MAC (Ours)" that it does not define; the reading implemented as
``granularity="video"``::

    z_st[b, i] = l2-normalise(mean_t x_st[b, t, i]),  z_ts likewise           [B, K, D]
    L[b, i]    = -log  exp(sim(z_st[b,i], z_ts[b,i]) / tau) / sum_{j=1..K} exp(sim(z_st[b,i], z_ts[b,j]) / tau)
    weight     = mean_t c[b, t, i]

i.e. each entity's clip-level ST summary must match its own TS summary rather than those of the
clip's other entities: entity-wise consistency, with no constraint on which time step matches
which ("temporal flexibility"). It is invariant to reordering the time steps of either path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["mac_loss", "mac_terms", "mac_terms_video", "micro_dualnet_loss", "LossTerms"]


def mac_terms(x_st: torch.Tensor, x_ts: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Per-element L[b, i, t] of Eq. 16, returned as [B, T, K].

    ::

        x_st, x_ts [B, T, K, D] -> z = l2-normalise -> [B, K, T, D]
        sim [B, K, T(anchor t), T(candidate j)] = z_st @ z_ts^T / tau
        L = -log_softmax(sim, over j)[..., t, t]
    """
    if x_st.shape != x_ts.shape or x_st.ndim != 4:
        raise ValueError(f"x_st and x_ts must both be [B, T, K, D], got {tuple(x_st.shape)} and {tuple(x_ts.shape)}")
    z_st = F.normalize(x_st.float(), dim=-1).transpose(1, 2)
    z_ts = F.normalize(x_ts.float(), dim=-1).transpose(1, 2)
    logits = z_st @ z_ts.transpose(-1, -2) / tau  # [B, K, T, T]
    log_p = torch.log_softmax(logits, dim=-1)
    return -log_p.diagonal(dim1=-2, dim2=-1).transpose(1, 2)  # [B, T, K]


def mac_terms_video(x_st: torch.Tensor, x_ts: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Per-entity video-level MAC terms L[b, i] (module docstring), returned as [B, K].

    ::

        x_st, x_ts [B, T, K, D] -> mean over T -> l2-normalise -> z [B, K, D]
        sim [B, K(anchor i), K(candidate j)] = z_st @ z_ts^T / tau;  L = -log_softmax(sim, over j)[..., i, i]
    """
    if x_st.shape != x_ts.shape or x_st.ndim != 4:
        raise ValueError(f"x_st and x_ts must both be [B, T, K, D], got {tuple(x_st.shape)} and {tuple(x_ts.shape)}")
    z_st = F.normalize(x_st.float().mean(dim=1), dim=-1)
    z_ts = F.normalize(x_ts.float().mean(dim=1), dim=-1)
    log_p = torch.log_softmax(z_st @ z_ts.transpose(-1, -2) / tau, dim=-1)  # [B, K, K]
    return -log_p.diagonal(dim1=-2, dim2=-1)


def mac_loss(x_st: torch.Tensor, x_ts: torch.Tensor, conf: torch.Tensor | None, tau: float = 0.07, *,
             granularity: str = "frame") -> torch.Tensor:
    """Confidence-weighted MAC loss (Eqs. 16-17), a scalar.

    Parameters
    ----------
    x_st, x_ts : Tensor [B, T, K, D]
        Raw outputs of the ST and TS paths (before routing).
    conf : Tensor [B, T, K] or None
        Entity keypoint confidence c; entities with 0 get no weight. None: every c = 1.
    tau : float
        Temperature (0.07).
    granularity : {"frame", "video"}
        Eq. 16 per time step, or the video-level reading (module docstring).
    """
    if granularity not in ("frame", "video"):
        raise ValueError(f"granularity must be 'frame' or 'video', got {granularity!r}")
    if conf is None:
        conf = x_st.new_ones(x_st.shape[:-1], dtype=torch.float32)
    if conf.shape != x_st.shape[:-1]:
        raise ValueError(f"conf must be [B, T, K] = {tuple(x_st.shape[:-1])}, got {tuple(conf.shape)}")
    if granularity == "video":
        terms = mac_terms_video(x_st, x_ts, tau)
        w = conf.detach().to(terms.dtype).mean(dim=1)  # [B, K]
    else:
        terms = mac_terms(x_st, x_ts, tau)
        w = conf.detach().to(terms.dtype)
    # clamp: a batch with no visible entity gives 0 (and zero gradient), not NaN.
    return (w * terms).sum() / w.sum().clamp(min=1e-6)


@dataclass
class LossTerms:
    """total = ce + mac_weight * mac (mac is 0 when MAC is off)."""

    total: torch.Tensor
    ce: torch.Tensor
    mac: torch.Tensor


def micro_dualnet_loss(output, labels: torch.Tensor, *, mac_weight: float = 0.1, mac_temperature: float = 0.07,
                       use_mac: bool = True, label_smoothing: float = 0.0, mac_granularity: str = "frame",
                       confidence_weighting: bool = True) -> LossTerms:
    """Eq. 21: cross-entropy on the logits + lambda * MAC on the raw path outputs.

    ``output`` is a :class:`model.micro_dualnet.MicroDualNetOutput`. MAC is skipped (0) when it is
    turned off or when the model has only one path (``x_ts`` or ``x_st`` is None).
    """
    ce = F.cross_entropy(output.logits.float(), labels, label_smoothing=label_smoothing)
    if use_mac and mac_weight > 0 and output.x_st is not None and output.x_ts is not None:
        conf = output.entity_conf if confidence_weighting else None
        mac = mac_loss(output.x_st, output.x_ts, conf, mac_temperature, granularity=mac_granularity)
    else:
        mac = ce.new_zeros(())
    return LossTerms(total=ce + mac_weight * mac, ce=ce, mac=mac)
