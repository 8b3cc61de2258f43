"""Kinematic video simulator: seated participants performing MA-52 micro-actions, with ground truth.

See docs/simulator.md. Modules: :mod:`~simulator.skeleton` (3-D seated skeleton),
:mod:`~simulator.camera` (projection), :mod:`~simulator.appearance` (per-participant
look), :mod:`~simulator.render` (OpenCV drawing, MP4), :mod:`~simulator.motions`
(idle behaviour and action programs), :mod:`~simulator.recording` (untrimmed recordings and
cohorts), :mod:`~simulator.clips` (trimmed labelled clips), ``python -m simulator``.
"""
