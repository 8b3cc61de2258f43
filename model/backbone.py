"""TSM ResNet backbone: torchvision's Bottleneck ResNet with a temporal shift in the residual branch.

Temporal Shift Module (Lin et al., ICCV 2019), "residual shift" placement: inside a block, before
its first convolution, 1/8 of the channels take the next frame's values, 1/8 the previous frame's,
the rest stay; the identity branch is untouched, so a shifted block still passes the frame's own
features. For ResNet-101 the reference implementation shifts only every other block of each stage
(blocks 0, 2, 4, ...: ``if i % n_round == 0`` with ``n_round = 2`` when layer3 has >= 23 blocks),
for ResNet-50 every block; ``block_interval=None`` applies that rule.

::

    frames [B, T, 3, H, W]
      -> fold time into batch            [B*T, 3, H, W]
      -> stem (conv 7x7/2, max pool /2)  [B*T, 64, H/4, W/4]
      -> layer1..layer4 (shift in blocks) [B*T, 2048, H/32, W/32]
    returns  maps   [B, T, 2048, H/32, W/32]   (F_t of the paper, per frame)
             pooled [B, T, 2048]               (per-frame global average)

Parameter names are torchvision's (``layer1.0.conv1.weight``), except that a shifted block's first
convolution lives under ``conv1.net`` (``layer1.0.conv1.net.weight``), as in the official TSM code;
:mod:`model.weights` converts between the layouts.

Block gates (MANet). ``block_gate`` adds a module in front of every block's first convolution,
inside the same wrapper: ``conv1 = TemporalShift(conv1, gate=block_gate(C_in))`` computes
``conv1(shift(gate(x)))`` on the residual branch (the identity branch is untouched). MANet's temporal
squeeze-and-excitation (:mod:`model.manet`) is such a gate. The gate's parameters live under
``conv1.gate`` and the convolution stays ``conv1.net`` in every block (also in the blocks that do not
shift), so ImageNet / TSM weights load into a gated backbone unchanged and the gates keep their
initialisation (:func:`model.weights.load_backbone_weights`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from model.config import BACKBONE_ARCHS, reference_tsm_interval

__all__ = ["TemporalShift", "TSMResNet", "temporal_shift"]


def temporal_shift(x: torch.Tensor, num_frames: int, shift_div: int = 8) -> torch.Tensor:
    """Shift 1/``shift_div`` of the channels one frame back and as many one frame forward.

    ::

        x [B*T, C, H, W]  (frames of a clip consecutive along the first axis)
        channels [0, C/d)      <- frame t+1   (zero at the last frame)
        channels [C/d, 2C/d)   <- frame t-1   (zero at the first frame)
        channels [2C/d, C)     unchanged

    Built with slicing and ``cat`` (no in-place writes), so autograd and ``torch.compile`` work.
    A channels_last input gives a channels_last output (``cat`` of the 5-D view would otherwise
    come back NCHW and make the next convolution convert its input in every shifted block).
    """
    nt, c, h, w = x.shape
    if nt % num_frames:
        raise ValueError(f"leading size {nt} is not a multiple of num_frames={num_frames}")
    fold = c // shift_div
    v = x.reshape(nt // num_frames, num_frames, c, h, w)
    zero = v.new_zeros(v.shape[0], 1, fold, h, w)
    from_next = torch.cat([v[:, 1:, :fold], zero], dim=1)
    from_prev = torch.cat([zero, v[:, :-1, fold:2 * fold]], dim=1)
    out = torch.cat([from_next, from_prev, v[:, :, 2 * fold:]], dim=2)
    out = out.reshape(nt, c, h, w)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class TemporalShift(nn.Module):
    """Wraps a convolution: ``net(temporal_shift(gate(x)))``.

    ``num_frames`` is set by :class:`TSMResNet` from each input clip before the forward pass, so one
    model serves clips of any length T (the paper uses T=8 and T=16).

    ``gate`` (optional) is called as ``gate(x, num_frames)`` on the block input before the shift
    (MANet's squeeze-and-excitation); ``shift=False`` keeps the gate but skips the shift (blocks
    that a block interval > 1 leaves unshifted, or a TSN backbone with gates).
    """

    def __init__(self, net: nn.Module, shift_div: int = 8, *, gate: nn.Module | None = None,
                 shift: bool = True) -> None:
        super().__init__()
        self.net = net
        self.shift_div = shift_div
        self.shift = shift
        self.num_frames = 1
        if gate is not None:
            self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "gate"):
            x = self.gate(x, self.num_frames)
        if self.shift:
            x = temporal_shift(x, self.num_frames, self.shift_div)
        return self.net(x)

    def extra_repr(self) -> str:
        return f"shift_div={self.shift_div}" if self.shift else "shift=False"


class TSMResNet(nn.Module):
    """A Bottleneck ResNet trunk (no pooling head, no fc) with temporal shifts.

    Parameters
    ----------
    arch : str
        Key of :data:`model.config.BACKBONE_ARCHS` ("resnet50", "resnet101", "resnet_tiny").
    shift_div : int
        1/``shift_div`` of the channels shift each way.
    block_interval : int or None
        Shift in blocks 0, n, 2n, ... of every stage; 0 means no shift at all; None follows the
        reference TSM rule (:func:`model.config.reference_tsm_interval`).
    width_per_group : int
        torchvision's Bottleneck inner width (64 standard; smaller for the test-size model).
    block_gate : callable or None
        ``block_gate(in_channels) -> nn.Module``: a gate in front of every block's first
        convolution (module docstring); None (default) adds none.
    """

    out_channels = 2048

    def __init__(self, arch: str = "resnet101", *, shift_div: int = 8, block_interval: int | None = None,
                 width_per_group: int = 64, block_gate: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        if block_interval is None:
            block_interval = reference_tsm_interval(arch)
        # Borrow torchvision's construction and initialisation, keep only the trunk.
        base = ResNet(Bottleneck, list(BACKBONE_ARCHS[arch]), width_per_group=width_per_group)
        self.conv1, self.bn1, self.relu, self.maxpool = base.conv1, base.bn1, base.relu, base.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        self.arch = arch
        self.block_interval = block_interval
        # Set by model.inference.prepare_for_inference: the frames folded into [B*T, 3, H, W] are
        # made channels_last there, since a 5-D clip tensor cannot carry that layout itself.
        self.memory_format = torch.contiguous_format
        self.shifted_blocks: list[str] = []
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for i, block in enumerate(getattr(self, stage)):
                shifted = block_interval > 0 and i % block_interval == 0
                if shifted or block_gate is not None:
                    gate = None if block_gate is None else block_gate(block.conv1.in_channels)
                    block.conv1 = TemporalShift(block.conv1, shift_div, gate=gate, shift=shifted)
                if shifted:
                    self.shifted_blocks.append(f"{stage}.{i}")

    def _set_num_frames(self, t: int) -> None:
        for m in self.modules():
            if isinstance(m, TemporalShift):
                m.num_frames = t

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] (N = B*T, shifts already configured) -> [N, 2048, H/32, W/32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, 3, H, W] -> (maps [B, T, 2048, h, w], pooled [B, T, 2048])."""
        if frames.ndim != 5:
            raise ValueError(f"frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        self._set_num_frames(t)
        maps = self.forward_maps(frames.flatten(0, 1).contiguous(memory_format=self.memory_format))
        pooled = maps.mean(dim=(-2, -1))
        return maps.unflatten(0, (b, t)), pooled.unflatten(0, (b, t))
