"""Skeletal-temporal augmentation of normalised keypoint sequences (MMN's "context-aware" augmentation).

Applied to the **sampled, normalised** window the model is about to see (inside :class:`model.mmn.MMN`'s
training-mode forward, after the per-window normalisation), so it cannot be undone by that
normalisation and cannot miss the sequence the way an augmentation of a discarded copy would
(DESIGN.md section 11: MMN's public code augments a copy that is never used).

Per sequence b (one draw for all T frames, so the motion itself is not distorted)::

    theta_b ~ U(-rotation, +rotation)              (radians; MMN: 15 degrees)
    s_b     ~ U(scale_min, scale_max)              (MMN: 0.9 - 1.1, isotropic)
    d_b     ~ U(-translation, +translation)^2      (MMN: 0.1, in normalised units: the window spans [-1, 1])
    A_b     = s_b R(theta_b)                       [2, 2]
    x'[b, t, v] = A_b x[b, t, v] + d_b             for detected joints (mask[b, t, v] = 1);
                                                     undetected joints keep their placeholder (0)

Temporal jitter (:func:`temporal_jitter`) resamples time indices only: frame t of the output is frame
s_b(t) of the input, ``s_b(t) = clamp(t + u_bt, 0, T-1)`` with ``u_bt ~ U{-j..j}``, made non-decreasing
(sorted) so the order of events is kept; values are copied, never interpolated.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sample_affine", "apply_affine", "random_affine", "temporal_indices", "temporal_jitter"]


def sample_affine(batch: int, *, rotation_deg: float, scale: tuple[float, float], translation: float,
                  generator: torch.Generator | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (A [B, 2, 2], d [B, 2]) drawn as in the module docstring."""
    u = torch.rand(batch, 4, generator=generator)
    theta = (2 * u[:, 0] - 1) * math.radians(rotation_deg)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    d = (2 * u[:, 2:] - 1) * translation
    cos, sin = torch.cos(theta), torch.sin(theta)
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) * s[:, None, None]
    return a.to(device), d.to(device)


def apply_affine(xy: torch.Tensor, a: torch.Tensor, d: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """x' = A x + d per sequence. xy [B, T, V, 2], A [B, 2, 2], d [B, 2], mask [B, T, V] (1: detected)."""
    out = torch.einsum("bij,btvj->btvi", a.to(xy.dtype), xy) + d.to(xy.dtype)[:, None, None, :]
    if mask is None:
        return out
    return torch.where(mask[..., None] > 0, out, xy)


def random_affine(xy: torch.Tensor, mask: torch.Tensor | None, *, rotation_deg: float, scale: tuple[float, float],
                  translation: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one affine per sequence and apply it (the training-time transform)."""
    a, d = sample_affine(xy.shape[0], rotation_deg=rotation_deg, scale=scale, translation=translation,
                         generator=generator, device=xy.device)
    return apply_affine(xy, a, d, mask)


def temporal_indices(batch: int, t: int, jitter: int, *, generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """[B, T] int64 source index of every output frame: clamp(t + U{-j..j}), sorted per sequence."""
    base = torch.arange(t)[None].expand(batch, t)
    if jitter <= 0 or t == 1:
        return base.clone().to(device)
    u = torch.randint(-jitter, jitter + 1, (batch, t), generator=generator)
    return (base + u).clamp(0, t - 1).sort(dim=1).values.to(device)


def temporal_jitter(x: torch.Tensor, jitter: int, *, generator: torch.Generator | None = None,
                    return_indices: bool = False):
    """Resample the time axis (dim 1) of x [B, T, ...] by :func:`temporal_indices`; values are copied."""
    idx = temporal_indices(x.shape[0], x.shape[1], jitter, generator=generator, device=x.device)
    view = idx.view(*idx.shape, *([1] * (x.ndim - 2))).expand(*idx.shape, *x.shape[2:])
    out = torch.gather(x, 1, view)
    return (out, idx) if return_indices else out
