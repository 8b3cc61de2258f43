"""Typed configuration of the hurdle analysis and of its outputs.

The same dataclasses back the Python API (:func:`analysis.hurdle.hurdle_analysis`) and the command
line (``python -m analysis.hurdle``), so both accept exactly the same options. Every choice that
changes a number (action selection rule, correction method and family, Firth fallback, CI level) is
a field here and is written into the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_GROUPS",
    "CORRECTIONS",
    "FAMILIES",
    "RANK_BY",
    "INTENSITY_SE",
    "MISCLASSIFICATION",
    "ERROR_RATES",
    "HurdleConfig",
    "OutputConfig",
]

DEFAULT_GROUPS: tuple[str, ...] = ("ASD", "PSY", "TDC")

# Multiple-comparison methods (names as in statsmodels.stats.multitest.multipletests, plus "none").
CORRECTIONS: tuple[str, ...] = ("fdr_bh", "holm", "bonferroni", "fdr_by", "none")

# How tests are grouped into families for the correction (see analysis.correction).
FAMILIES: tuple[str, ...] = ("part", "all", "action", "contrast")

# Tests of the intensity contrasts (see analysis.intensity_tests): sandwich HC0 x n/(n-1), HC2 or HC3
# with a normal (-z) or t(n - p) (-t) reference; wild score bootstrap; permutation of group labels.
INTENSITY_SE: tuple[str, ...] = ("hc0-z", "hc0-t", "hc2-z", "hc2-t", "hc3-z", "hc3-t", "wild", "permutation")

# Corrections of percent time for the read-out's errors (see analysis.misclassification).
MISCLASSIFICATION: tuple[str, ...] = ("none", "acc", "pacc", "ratio")

# Whether the read-out's error rates are estimated per group (see analysis.misclassification.rate_grouping).
ERROR_RATES: tuple[str, ...] = ("auto", "pooled", "group")

# How "most frequent" actions are ranked for --top-actions (see analysis.cohort.select_actions).
RANK_BY: tuple[str, ...] = ("engaged", "mean")


@dataclass(frozen=True)
class HurdleConfig:
    """Options of the two-part (hurdle) analysis.

    Attributes
    ----------
    groups : tuple of str
        Group labels, in the order used for contrasts: every pair ``(groups[i], groups[j])`` with
        ``i < j`` is one contrast "groups[i] vs groups[j]" and effects are group i relative to group j.
        The first group is the reference level of the model's treatment coding (this does not change
        any contrast).
    actions : tuple of str or None
        Analyse exactly these actions (overrides ``top_actions``).
    top_actions : int or None
        Analyse the N most frequent actions (ranked by ``rank_by``); None or 0 = all actions.
    rank_by : {"engaged", "mean"}
        "Frequent" means the largest share of participants with any engagement (``"engaged"``) or the
        largest mean percent time over all participants (``"mean"``). Ties are broken by the other
        criterion, then by action name.
    covariates : tuple of str
        Participant-level columns adjusted for in both parts.
    categorical : tuple of str
        Covariates to treat as categorical even when numeric (string, boolean and categorical columns
        are detected as categorical automatically).
    min_engaged : int
        Minimum number of engagers in each group of a contrast for the intensity part.
    intensity_se : str
        One of :data:`INTENSITY_SE`: how intensity contrasts are tested. The default is the one that
        held its size on the whole null grid of ``bench/bench_hurdle_calibration.py`` with the least
        power lost (issue 28; the table is in docs/hurdle.md). ``"hc0-z"`` is the method before issue 28
        (HC0 x n/(n-1), normal reference; rejects true nulls at about 0.12 at alpha 0.05 with 12
        engagers per group and skewed shares).
    intensity_resamples : int
        Draws of the wild bootstrap or the permutation test (p-values are multiples of 1/(draws+1)).
    intensity_seed : int
        Seed of those draws (``numpy.random.default_rng``), so results repeat exactly.
    min_engaged_test : int
        Fewest engagers in each group of a contrast for an intensity p-value. Below it the row keeps
        its estimate but gets no SE, CI or p, and a note: with fewer engagers no method of the
        calibration study held its size (source: the same table).
    correction : str
        One of :data:`CORRECTIONS`.
    family : str
        One of :data:`FAMILIES`.
    pairwise_subsets : bool
        Refit each contrast on the two groups' participants only, instead of one model with all
        groups and pairwise Wald (or penalised-likelihood-ratio) contrasts.
    firth : {"auto", "always"}
        ``"auto"``: maximum likelihood, switching to Firth's penalised likelihood for an action's
        probability model when separation is detected; ``"always"``: Firth for every probability model.
    firth_ci : {"profile", "wald"}
        Confidence interval of Firth contrasts: profile penalised likelihood or Wald.
    ci_level : float
        Confidence level of all intervals.
    ignore_other_groups : bool
        Drop participants whose group is not in ``groups`` instead of rejecting the cohort.
    percent_scale : {None, "percent", "fraction"}
        Unit of ``percent_time``. None: percent (0-100), but a table whose values are all <= 1 is
        refused as probable fractions of time, since analysing fractions as percent would silently
        give wrong intensities. ``"percent"`` confirms percent; ``"fraction"`` reads values in [0, 1]
        and multiplies them by 100.
    misclassification : {"none", "acc", "pacc", "ratio"}
        Correct percent time for the read-out's errors before the hurdle (issue 23;
        :mod:`analysis.misclassification`): ``"acc"`` the adjusted count ``(observed - fpr) / (tpr - fpr)``,
        ``"pacc"`` its variant on per-frame scores, ``"ratio"`` the two-phase ratio estimator
        ``observed x (coded frames / read-out frames of the coded participants)`` (for errors that scale
        with the action's own time, such as segments read too long or too short). ``"none"`` (default)
        is the analysis without it, identical to the one before issue 23.
    validation : str or None
        The validation folder (``RUN/validation``: ``confusion.parquet``, optionally ``scores.parquet``)
        the error rates come from; required unless misclassification is "none" (or the API is given a
        validation set).
    validation_reference : str or None
        The reference coder of the confusion counts (None: ``consensus``, or the only one).
    imputations : int
        Bootstrap draws M of the coded participants, i.e. corrected cohort tables, combined by Rubin's
        rules (:mod:`analysis.rubin`).
    imputation_seed : int
        Seed of those draws.
    imputation_workers : int
        Processes fitting the imputations (1: in this process). The results do not depend on it.
    error_rates : {"auto", "pooled", "group"}
        Error rates per group (``"group"``), over all groups (``"pooled"``), or per group only when
        every group has at least ``min_coded_per_group`` coded participants (``"auto"``; the results
        say which was used and why).
    min_coded_per_group : int
        Fewest coded participants per group for per-group rates under ``"auto"``.
    min_coded_positive : int
        With per-group rates, an action gets its own rate per group only when every group has at
        least this many coded participants showing it; otherwise that action's rates are pooled.
    frame_rate : float
        Frames per second of the read-out, for the frame count of the zero floor.
    zero_floor : float
        Observed frames at or below this quantile of Binomial(frames, fpr) are corrected to 0 (the
        participant joins the zero part); 0 keeps only observed zeros at 0.
    """

    groups: tuple[str, ...] = DEFAULT_GROUPS
    actions: tuple[str, ...] | None = None
    top_actions: int | None = 10
    rank_by: Literal["engaged", "mean"] = "engaged"
    covariates: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    min_engaged: int = 3
    intensity_se: Literal[INTENSITY_SE] = "permutation"
    intensity_resamples: int = 1999
    intensity_seed: int = 0
    min_engaged_test: int = 12
    correction: Literal[CORRECTIONS] = "fdr_bh"
    family: Literal[FAMILIES] = "part"
    pairwise_subsets: bool = False
    firth: Literal["auto", "always"] = "auto"
    firth_ci: Literal["profile", "wald"] = "profile"
    ci_level: float = 0.95
    ignore_other_groups: bool = False
    percent_scale: Literal["percent", "fraction"] | None = None
    misclassification: Literal[MISCLASSIFICATION] = "none"
    validation: str | None = None
    validation_reference: str | None = None
    imputations: int = 50
    imputation_seed: int = 0
    imputation_workers: int = 1
    error_rates: Literal[ERROR_RATES] = "auto"
    min_coded_per_group: int = 5
    min_coded_positive: int = 3
    frame_rate: float = 30.0
    zero_floor: float = 0.99

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise sequences given as lists into tuples.
        for name in ("groups", "covariates", "categorical"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.actions is not None:
            object.__setattr__(self, "actions", tuple(self.actions))
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {self.correction!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}, got {self.rank_by!r}")
        if self.firth not in ("auto", "always"):
            raise ValueError(f"firth must be 'auto' or 'always', got {self.firth!r}")
        if self.firth_ci not in ("profile", "wald"):
            raise ValueError(f"firth_ci must be 'profile' or 'wald', got {self.firth_ci!r}")
        if not 0.5 < self.ci_level < 1:
            raise ValueError(f"ci_level must be in (0.5, 1), got {self.ci_level}")
        if self.min_engaged < 2:
            raise ValueError(f"min_engaged must be >= 2, got {self.min_engaged}")
        if self.intensity_se not in INTENSITY_SE:
            raise ValueError(f"intensity_se must be one of {', '.join(INTENSITY_SE)}, got {self.intensity_se!r}")
        if self.intensity_resamples < 99:
            raise ValueError(f"intensity_resamples must be >= 99, got {self.intensity_resamples}")
        if self.min_engaged_test < 0:
            raise ValueError(f"min_engaged_test must be >= 0, got {self.min_engaged_test}")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups must be distinct, got {self.groups}")
        if len(self.groups) < 2:
            raise ValueError(f"at least 2 groups are needed, got {self.groups}")
        if self.percent_scale not in (None, "percent", "fraction"):
            raise ValueError(f"percent_scale must be 'percent' or 'fraction', got {self.percent_scale!r}")
        if self.misclassification not in MISCLASSIFICATION:
            raise ValueError(f"misclassification must be one of {', '.join(MISCLASSIFICATION)}, got {self.misclassification!r}")
        if self.error_rates not in ERROR_RATES:
            raise ValueError(f"error_rates must be one of {', '.join(ERROR_RATES)}, got {self.error_rates!r}")
        if self.imputations < 2:
            raise ValueError(f"imputations must be >= 2 (Rubin's rules need a between-imputation variance), got {self.imputations}")
        if self.imputation_workers < 1:
            raise ValueError(f"imputation_workers must be >= 1, got {self.imputation_workers}")
        if self.min_coded_per_group < 1:
            raise ValueError(f"min_coded_per_group must be >= 1, got {self.min_coded_per_group}")
        if self.min_coded_positive < 1:
            raise ValueError(f"min_coded_positive must be >= 1, got {self.min_coded_positive}")
        if not self.frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {self.frame_rate}")
        if not 0 <= self.zero_floor < 1:
            raise ValueError(f"zero_floor must be in [0, 1), got {self.zero_floor}")
        if self.validation is not None:
            object.__setattr__(self, "validation", str(self.validation))
        if self.top_actions is not None and self.top_actions < 0:
            raise ValueError(f"top_actions must be >= 0, got {self.top_actions}")

    @property
    def selection(self) -> str:
        """The action-selection rule in words (written into the outputs)."""
        if self.actions is not None:
            return "actions given by the user"
        if not self.top_actions:
            return "all actions"
        crit = "share of participants engaged" if self.rank_by == "engaged" else "mean percent time"
        return f"top {self.top_actions} actions by {crit}"


@dataclass(frozen=True)
class OutputConfig:
    """What is written besides the results table.

    Attributes
    ----------
    table_rows : int
        Rows of the publication table (the K most significant tests by raw p).
    plots : bool
        Draw the per-action violin plots and the overview figure.
    plot_p : {"adjusted", "raw"}
        Which p decides the significance brackets in the plots.
    alpha : float
        Significance threshold for brackets (stars: * < alpha, ** < 0.01, *** < 0.001).
    formats : tuple of str
        Figure formats.
    """

    table_rows: int = 10
    plots: bool = True
    plot_p: Literal["adjusted", "raw"] = "adjusted"
    alpha: float = 0.05
    formats: tuple[str, ...] = field(default=("png", "svg"))
