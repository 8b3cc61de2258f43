"""Pictures of the simulator: every action (:func:`action_sheet`) and one recording (:func:`recording_sheet`).

:func:`action_sheet`: one tile per action at its most marked frame.
Each tile renders a fresh participant (look from the sheet's seed) doing the action over 2 s; the
tile shows the frame where a motion-defined action's planted track peaks, or the middle of the hold
of a position-defined one, captioned with the action name, MA-52 code and kind.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from model.taxonomy import MA52
from simulator.appearance import sample_look
from simulator.motions import PROGRAMS, idle_controls
from simulator.recording import CohortConfig, cohort_specs, render_participant
from simulator.render import Renderer
from simulator.skeleton import skeleton_at

__all__ = ["action_sheet", "recording_sheet"]


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


def recording_sheet(config: CohortConfig, *, participant: int = 0, strip: int = 8, width: int = 960) -> np.ndarray:
    """BGR image: ``strip`` evenly spaced frames of one recording above its ground-truth ethogram
    (one row per action the participant performs, a bar per event, time on the x axis)."""
    spec = cohort_specs(config)[participant]
    wanted = set(np.linspace(0, spec.num_frames - 1, strip).round().astype(int).tolist())
    frames = [f for i, f in enumerate(render_participant(config, spec)) if i in wanted]
    tile_w = width // strip
    tile_h = int(round(tile_w * config.size[1] / config.size[0]))
    top = np.hstack([cv2.resize(f, (tile_w, tile_h), interpolation=cv2.INTER_AREA) for f in frames])
    actions = sorted({e.action for e in spec.events}, key=MA52.index)
    row, label_w = 18, 190
    w = top.shape[1]
    chart = np.full((row * (len(actions) + 2), w, 3), 255, np.uint8)
    plot_w = w - label_w - 8
    x = lambda frame: int(label_w + plot_w * frame / spec.num_frames)  # noqa: E731
    for k, action in enumerate(actions):
        y = row * k + 4
        cv2.putText(chart, action, (4, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(chart, (label_w, y + 8), (label_w + plot_w, y + 8), (225, 225, 225), 1)
        hue = int(180 * MA52.index(action) / MA52.num_actions)
        colour = cv2.cvtColor(np.uint8([[[hue, 200, 200]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        for e in spec.events:
            if e.action == action:
                cv2.rectangle(chart, (x(e.start), y + 2), (max(x(e.stop) - 1, x(e.start) + 1), y + 14), colour, -1)
    y = row * len(actions) + 8
    cv2.line(chart, (label_w, y), (label_w + plot_w, y), (0, 0, 0), 1)
    seconds = spec.num_frames / config.fps
    step = 10 if seconds > 40 else 5
    for t in np.arange(0, seconds + 1e-9, step):
        xt = x(t * config.fps)
        cv2.line(chart, (xt, y), (xt, y + 4), (0, 0, 0), 1)
        cv2.putText(chart, f"{t:g}s", (xt - 8, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    title = np.full((22, w, 3), 255, np.uint8)
    cv2.putText(title, f"{spec.participant_id} ({spec.group}, age {spec.age:.0f}): {len(spec.events)} events, "
                f"{seconds:g} s - ground truth", (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([title, top, chart])
