"""Writing ``validation/``: the tables, figures and summary of one comparison, as one staged set.

::

    OUT/pairs.parquet, pairs.csv     one row per action (and ``all``) and pair of raters
    OUT/participants.parquet         per participant x action x pair: percent time of both raters
    OUT/coverage.parquet             per participant x pair: frames observed by each, both, either
    OUT/confusion.parquet            per participant x action x reference: the model's frame counts
                                     (only with a model; contract ``validation_confusion``)
    OUT/scores.parquet               the same rows: the model's per-frame scores summed over the
                                     reference's positive / negative frames (contract ``validation_scores``)
    OUT/summary.json                 :meth:`AgreementResult.summary`
    OUT/figures/kappa_by_action.png, figures/bland_altman/<action>.png

Every file goes through :class:`pipeline.ownership.StagedSet` (stage ``agreement``): a failure leaves
the previous set as it was; a rerun replaces only files of ours.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from analysis.agreement.compare import ALL, CONFUSION, SCORES, AgreementResult
from analysis.agreement.figures import bland_altman_figure, kappa_figure, slug
from pipeline.artifacts import sidecar_path, write_artifact
from pipeline.ownership import StagedSet

__all__ = ["STAGE", "write_validation", "figure_actions"]

STAGE = "agreement"


def figure_actions(result: AgreementResult) -> list[str]:
    """Actions that get a Bland-Altman figure: those some rater coded for some participant, then ``all``."""
    p = result.participants
    shown = set(p.loc[(p["pct_a"] > 0) | (p["pct_b"] > 0), "action"])
    return [a for a in result.actions if a in shown] + [ALL]


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})


def write_validation(result: AgreementResult, out: str | Path, *, figures: bool = True, sources: dict | None = None,
                     inputs: dict | None = None) -> list[Path]:
    """Write the set (see the module docstring); returns the final paths of the data files and figures.

    ``sources``: where each setting came from (the CLI's); ``inputs``: digests of the files compared,
    recorded so that a rerun on the same inputs can skip (:func:`analysis.agreement.hook.run_validation`).
    """
    out = Path(out)
    cfg = dataclasses.asdict(result.config)
    facts = {"coders": list(result.coders), "reference": result.reference, "actions": list(result.actions),
             "model": result.model, "notes": result.notes, "bin_text": result.config.describe_bin(),
             "sources": dict(sources or {}), "inputs": dict(inputs or {})}
    with StagedSet(out, STAGE) as st:

        def table(rel: str, df, contract=None) -> None:
            with st.writing(rel) as path:
                write_artifact(df, path, contract=contract, stage=STAGE, config=cfg, extra=facts)
            st.add_written(sidecar_path(path))

        table("pairs.parquet", result.pairs)
        with st.writing("pairs.csv") as path:
            result.pairs.to_csv(path, index=False)
        table("participants.parquet", result.participants)
        table("coverage.parquet", result.coverage)
        if result.confusion is not None:
            table("confusion.parquet", result.confusion, CONFUSION)
        if result.scores is not None:
            table("scores.parquet", result.scores, SCORES)
        with st.writing("summary.json") as path:
            path.write_text(json.dumps({**result.summary(), "config": cfg}, indent=2, default=str) + "\n", encoding="utf-8")
        if figures:
            with st.writing("figures/kappa_by_action.png") as path:
                _save(kappa_figure(result.pairs), path)
            for a in figure_actions(result):
                with st.writing(f"figures/bland_altman/{slug(a)}.png") as path:
                    _save(bland_altman_figure(result.participants, result.pairs, a, result.reference), path)
        final = st.commit()
    return [p for p in final if not p.name.endswith(".json") or p.name == "summary.json"]
