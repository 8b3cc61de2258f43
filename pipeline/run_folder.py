"""The cohort run folder: every path of one run, in one place (the one documented layout).

The flow writes this layout, the stage CLIs given ``--run RUN`` read and write it, and the report
reads it (``reports/run.py``): nothing else spells a run's paths. ``docs/contracts.md`` ("Run
folder") shows it with the stage that writes each part::

    RUN/
      manifest.csv                    the manifest as the run used it (absolute video paths, video_id)
      pose/                           python -m pipeline.pose --out RUN/pose
        keypoints/<video_id>.parquet    KEYPOINTS contract (+ sidecar)
        qc.parquet, qc.csv              pose QC, one row per video
      recognize/                      python -m pipeline.recognize --out RUN/recognize
        windows/<video_id>.parquet      WINDOWS contract (+ sidecar: checkpoint, classes, its read-out)
        qc_recognize.parquet, .csv      recognition QC
      readout/                        python -m pipeline.aggregate --run RUN
        segments/<video_id>.parquet     SEGMENTS contract
        detections.csv                  MMA-52 detection format
        cohort.parquet                  COHORT contract: the statistics' input
        bouts.parquet                   BOUTS contract
        exclusions.parquet              EXCLUSIONS contract
      hurdle/                         python -m analysis.hurdle --cohort RUN/readout/cohort.parquet --out RUN/hurdle
        results.parquet, table.*, plots/
      report/                         python -m reports.build --run RUN --out RUN/report
        index.html, participants/
      codings/                        human codings imported for this run (codings contract)
      validation/                     agreement of the model with the coders

The object holds paths only (it creates nothing), so it is cheap to build anywhere and safe to pass
to Dask workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunFolder"]


@dataclass(frozen=True)
class RunFolder:
    """Paths of one cohort run rooted at ``root`` (see the module docstring for the layout)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.root / "manifest.csv"

    # -- pose -----------------------------------------------------------------------------------
    @property
    def pose(self) -> Path:
        return self.root / "pose"

    @property
    def keypoints(self) -> Path:
        return self.pose / "keypoints"

    def keypoints_file(self, video_id: str) -> Path:
        return self.keypoints / f"{video_id}.parquet"

    @property
    def pose_qc(self) -> Path:
        return self.pose / "qc.parquet"

    # -- recognition ----------------------------------------------------------------------------
    @property
    def recognize(self) -> Path:
        return self.root / "recognize"

    @property
    def windows(self) -> Path:
        return self.recognize / "windows"

    def windows_file(self, video_id: str) -> Path:
        return self.windows / f"{video_id}.parquet"

    # -- read-out -------------------------------------------------------------------------------
    @property
    def readout(self) -> Path:
        return self.root / "readout"

    @property
    def segments(self) -> Path:
        return self.readout / "segments"

    @property
    def cohort(self) -> Path:
        return self.readout / "cohort.parquet"

    @property
    def bouts(self) -> Path:
        return self.readout / "bouts.parquet"

    @property
    def exclusions(self) -> Path:
        return self.readout / "exclusions.parquet"

    @property
    def detections(self) -> Path:
        return self.readout / "detections.csv"

    # -- statistics and report ------------------------------------------------------------------
    @property
    def hurdle(self) -> Path:
        return self.root / "hurdle"

    @property
    def results(self) -> Path:
        return self.hurdle / "results.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report"

    # -- human codings (wave 3) -----------------------------------------------------------------
    @property
    def codings(self) -> Path:
        return self.root / "codings"

    @property
    def validation(self) -> Path:
        return self.root / "validation"
