"""The model side of recognition: batches of uint8 window clips -> class probabilities and routing
shares (:class:`WindowClassifier`), the model prepared once per device and setting. Any model family
(:mod:`model.families`): the checkpoint's family runs the forward; a family without routing gives
no routing shares, one without pixels is given no frames.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

from model.checkpoint import Checkpoint
from model.inference import autocast_for, prepare_for_inference
from pipeline.person_crop import normalize
from pipeline.recognize.options import RecognizeOptions

__all__ = ["WindowClassifier"]

_PREPARE_LOCK = threading.Lock()
_PREPARED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, torch.nn.Module]]" = weakref.WeakKeyDictionary()


def _prepared(model: torch.nn.Module, device: torch.device, channels_last: bool, compile: bool) -> torch.nn.Module:
    """``prepare_for_inference`` once per model and setting, under a lock.

    Preparing converts the weights in place (device, memory format): doing it again while another
    thread (another video of a Prefect flow sharing the loaded checkpoint) runs a forward on the same
    model would feed that forward half-converted weights. Prepared once, the model is only read.
    """
    key = (str(device), channels_last, compile)
    with _PREPARE_LOCK:
        done = _PREPARED.get(model)
        if done is None or done[0] != key:
            done = (key, prepare_for_inference(model, device=device, channels_last=channels_last, compile=compile))
            _PREPARED[model] = done
        return done[1]


class WindowClassifier:
    """Batches of uint8 window clips -> (probs [B, C], ST routing share [B, K] or None) as float32 numpy.

    The model is prepared once (eval, device, channels_last, optional compile). Frames are normalised
    on the device. With ``compile`` a short last batch is padded to ``batch_size`` (one compiled shape).
    """

    def __init__(self, ckpt: Checkpoint, options: RecognizeOptions) -> None:
        self.device = options.torch_device
        self.prep = ckpt.preprocessing
        self.amp = options.amp
        self.pad_to = options.batch_size if options.compile else None
        self.family = ckpt.family
        self.pixels = ckpt.uses_pixels
        self.model = _prepared(ckpt.model, self.device, options.channels_last, options.compile)

    def __call__(self, frames: torch.Tensor, keypoints: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """frames [B, T, 3, S, S] uint8 ([B, T, 3, 0, 0] for a keypoint-only model), keypoints [B, T, J, 3]
        float32 (CPU, pinned on CUDA)."""
        b = frames.shape[0]
        if self.pad_to and b < self.pad_to:
            frames = torch.cat([frames, frames.new_zeros((self.pad_to - b, *frames.shape[1:]))])
            keypoints = torch.cat([keypoints, keypoints.new_zeros((self.pad_to - b, *keypoints.shape[1:]))])
        x = normalize(frames.to(self.device, non_blocking=True), self.prep) if self.pixels else None
        k = keypoints.to(self.device, non_blocking=True)
        with torch.inference_mode(), autocast_for(k.device, self.amp):
            out = self.family.forward(self.model, x, k)
        probs = out.logits[:b].float().softmax(-1)
        if out.routing is None:
            return probs.cpu().numpy(), None
        st = out.routing[:b, ..., 0].float().mean(dim=1)  # [B, K]: ST weight per entity, mean over T
        return probs.cpu().numpy(), st.cpu().numpy()

