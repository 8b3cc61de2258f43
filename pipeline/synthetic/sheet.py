"""Contact sheet of every simulated action: one tile per action at its most marked frame.

Each tile renders a fresh participant (look from the sheet's seed) doing the action over 2 s; the
tile shows the frame where a motion-defined action's planted track peaks, or the middle of the hold
of a position-defined one, captioned with the action name, MA-52 code and kind.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from model.taxonomy import MA52
from pipeline.synthetic.appearance import sample_look
from pipeline.synthetic.motions import PROGRAMS, idle_controls
from pipeline.synthetic.render import Renderer
from pipeline.synthetic.skeleton import skeleton_at

__all__ = ["action_sheet"]


def action_sheet(*, tile: tuple[int, int] = (160, 192), columns: int = 5, seed: int = 0, fps: float = 30.0,
                 noise: bool = True) -> np.ndarray:
    """BGR image with one tile (W, H) per simulated action, captioned in a band above it.

    ``noise=False`` draws without sensor noise (a PNG of it compresses far better, e.g. for docs)."""
    w, h = tile
    tiles = []
    for k, (name, prog) in enumerate(PROGRAMS.items()):
        rng = np.random.default_rng([seed, k])
        look = sample_look(rng, (w, h))
        if not noise:
            look = replace(look, noise_sigma=0.0)
        n = int(2 * fps)
        c = idle_controls(n, fps, rng)
        params = prog.plant(c, 0, n, fps, rng)
        i = int(np.argmax(np.abs(params["signal"]))) if prog.kind == "motion" else n // 2
        img = Renderer(look, seed=k).render(skeleton_at(look.body, c, i), i / fps)
        band = np.full((max(26, h // 7), w, 3), 255, np.uint8)
        code = MA52.codes[MA52.index(name)]
        for text, y, colour in ((name, 0.42, (0, 0, 0)), (f"{code} {prog.body_part}, {prog.kind}", 0.88, (90, 90, 90))):
            scale = band.shape[0] / 60.0
            while scale > 0.2 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > w - 4:
                scale *= 0.92
            cv2.putText(band, text, (2, int(band.shape[0] * y)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
        img = np.vstack([band, img])
        tiles.append(img)
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    return np.vstack([np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)])
