"""Kinematic video simulator: seated participants performing MA-52 micro-actions, with ground truth.

See docs/simulator.md. Modules: :mod:`~pipeline.synthetic.skeleton` (3-D seated skeleton),
:mod:`~pipeline.synthetic.camera` (projection), :mod:`~pipeline.synthetic.appearance` (per-participant
look), :mod:`~pipeline.synthetic.render` (OpenCV drawing, MP4), :mod:`~pipeline.synthetic.motions`
(idle behaviour and action programs), :mod:`~pipeline.synthetic.recording` (untrimmed recordings and
cohorts), :mod:`~pipeline.synthetic.clips` (trimmed labelled clips), ``python -m pipeline.synthetic``.
"""
