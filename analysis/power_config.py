"""Settings of the power analysis (``python -m analysis.power``): one frozen dataclass, the house style.

The analysis whose power is estimated is a :class:`analysis.config.HurdleConfig` (the user's, from
``--config`` or the same flags as ``python -m analysis.hurdle``); :class:`PowerConfig` holds only what
the simulation adds: how many replicates, the seed, the significance level, the targets, how the
pilot's intensity distribution is modelled and how the frames of a recording are counted when
machine-coding error is simulated. Every field's annotation holds its bounds and help, from which
:func:`pipeline.settings.add_arguments` derives the flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

__all__ = ["INTENSITY_MODELS", "ENGINES", "PowerConfig"]

# How the intensity among engagers is modelled from a pilot (analysis.power_spec):
# beta-mom: Beta fitted by the method of moments; beta-ml: Beta fitted by maximum likelihood;
# resample: the pilot's engagers' shares drawn with replacement.
INTENSITY_MODELS: tuple[str, ...] = ("beta-mom", "beta-ml", "resample")

# How each simulated cohort is analysed (analysis.power_sim): fast = closed forms of the groups-only
# hurdle fits (the same numbers as analysis.hurdle, checked by tests/test_power.py) with the real
# functions wherever a closed form does not apply; full = analysis.hurdle.hurdle_analysis itself on
# every simulated cohort (needed for covariates; about 30x slower).
ENGINES: tuple[str, ...] = ("auto", "fast", "full")


@dataclass(frozen=True)
class PowerConfig:
    """Simulation settings of the power analysis.

    Attributes
    ----------
    nsim : int
        Simulated cohorts per design (sample size). The Monte-Carlo se of a power p is
        ``sqrt(p (1 - p) / nsim)``: 0.018 at p = 0.8 with the default 500.
    seed : int
        Seed of the simulation. Replicate ``i`` of a design with group sizes ``n`` draws from
        ``numpy.random.SeedSequence(seed, spawn_key=(*n, i))``, so a table repeats exactly whatever
        the number of workers or chunks, and a longer grid or a larger ``nsim`` reuses the replicates
        already computed.
    alpha : float
        A test counts as a rejection when its *adjusted* p (the correction of the analysis) is below
        alpha; ``power_unadjusted`` uses the raw p.
    targets : tuple of float
        Power levels for which the smallest sample size of the grid is reported (default 80 % and 90 %).
    intensity_model : str
        One of :data:`INTENSITY_MODELS` (pilot only; a spec gives Beta parameters).
    engine : str
        One of :data:`ENGINES`; ``auto`` = ``full`` when the analysis has covariates, else ``fast``.
    fps : float
        Frames per second of the recordings: with ``--agreement`` a participant's recording has
        ``round(observed_s * fps)`` frames (docs/power.md, frame model).
    chunk : int
        Replicates per unit of work (one file in the resume folder). Results do not depend on it.
    """

    nsim: Annotated[int, Field(ge=10, description="simulated cohorts per sample size")] = 500
    seed: Annotated[int, Field(ge=0, description="random seed (tables repeat exactly for the same seed)")] = 0
    alpha: Annotated[float, Field(gt=0, lt=1, description="significance level of the adjusted p-values")] = 0.05
    targets: Annotated[tuple[float, ...], Field(description=(
        "power levels for the smallest sample size, comma-separated"), json_schema_extra={"metavar": "P,..."})] = (0.8, 0.9)
    intensity_model: Annotated[Literal[INTENSITY_MODELS], Field(description=(
        "intensity among engagers from a pilot: Beta by method of moments or maximum likelihood, or resampling "
        "the pilot's engagers' shares"))] = "beta-mom"
    engine: Annotated[Literal[ENGINES], Field(description=(
        "fast: closed forms of the groups-only fits (same numbers as analysis.hurdle); full: analysis.hurdle on "
        "every simulated cohort (covariates need it); auto: full only with covariates"))] = "auto"
    fps: Annotated[float, Field(gt=0, allow_inf_nan=False, description=(
        "frames per second of the recordings (frame model of --agreement)"))] = 30.0
    chunk: Annotated[int, Field(ge=1, description="replicates per work unit / resume file")] = 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))
        if not self.targets or any(not 0 < t < 1 for t in self.targets):
            raise ValueError(f"targets: power levels must be in (0, 1), got {self.targets}")
