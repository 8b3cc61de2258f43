"""Publication table in the style of the Micro-DualNet paper's Table V, as HTML, Markdown and LaTeX.

Columns: Action, Contrast (direction in words, "ASD < PSY"), Type ("Prob." for engagement probability,
"%" for intensity among engagers), Effect (odds ratio, group_a vs group_b), p and p_adj, APA style
(no leading zero, "<.001"). Rows are the K most significant estimable tests by raw p, as in the paper,
which lists the most significant rows rather than all p < .05. The caption states the correction.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

__all__ = ["format_p", "publication_table", "table_caption", "to_html", "to_markdown", "to_latex"]

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # where Markdown would start raw HTML or an autolink
_TYPE = {"probability": "Prob.", "intensity": "%", "count": "Bouts", "duration": "Dur."}
HEADER = ["Action", "Contrast", "Type", "Effect", "p", "p_adj"]


def format_p(p: float) -> str:
    """APA-style p: '<.001', '.004', '.250'; an em dash when missing."""
    if p is None or not np.isfinite(p):
        return "—"
    if p < 0.001:
        return "<.001"
    text = f"{p:.3f}"
    return text[1:] if text.startswith("0") else text


def publication_table(results: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The K most significant estimable tests as formatted strings.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results of :func:`analysis.hurdle.hurdle_analysis`.
    k : int
        Number of rows.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`HEADER`, all str.
    """
    est = results[results["p"].notna()].sort_values(["p", "action", "contrast", "part"], kind="mergesort").head(k)
    return pd.DataFrame(
        {
            "Action": est["action"].to_numpy(),
            "Contrast": est["direction"].to_numpy(),
            "Type": est["part"].map(_TYPE).to_numpy(),
            "Effect": [f"{e:.2f}" for e in est["effect"]],
            "p": [format_p(p) for p in est["p"]],
            "p_adj": [format_p(p) for p in est["p_adj"]],
        },
        columns=HEADER,
    )


def table_caption(results: pd.DataFrame, k: int) -> str:
    """Caption naming the tests, the effect, the correction and its family."""
    fam = results["family"].iloc[0] if len(results) else ""
    sel = results["selection"].iloc[0] if len(results) else ""
    cov = results["covariates"].iloc[0] if len(results) else "none"
    n_tests = int(results["p"].notna().sum())
    return (
        f"Pairwise group differences in micro-action engagement: the {k} most significant of {n_tests} tests "
        f"({sel}). Prob.: engagement probability (logistic GLM); %: percent of time engaged among participants "
        f"with nonzero engagement (fractional logit, robust SE). Effect: odds ratio of the first group relative "
        f"to the second. Covariates: {cov}. p_adj: {fam}."
    )


def to_html(table: pd.DataFrame, caption: str) -> str:
    """A self-contained HTML table."""
    head = "".join(f"<th>{html.escape(h) if h != 'p_adj' else '<i>p</i><sub>adj</sub>'}</th>" for h in table.columns)
    head = head.replace("<th>p</th>", "<th><i>p</i></th>")
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in table.itertuples(index=False)
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Hurdle results</title>\n"
        "<style>table{border-collapse:collapse;font-family:serif}caption{caption-side:top;text-align:left;"
        "max-width:48em;margin-bottom:.5em}th,td{padding:2px 10px;text-align:left}thead th{border-top:2px solid;"
        "border-bottom:1px solid}tbody tr:last-child td{border-bottom:2px solid}</style></head><body>\n"
        f"<table>\n<caption>{html.escape(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n"
        "</tbody>\n</table>\n</body></html>\n"
    )


def to_markdown(table: pd.DataFrame, caption: str) -> str:
    r"""A GitHub-flavoured Markdown table with the caption above it.

    Cells and caption carry user text (group and action names, covariate names), and Markdown passes
    raw HTML through to the page that renders it (a group named ``<img src=x onerror=...>`` would run
    there). A ``<`` that could open a tag, comment or autolink (followed by a letter, ``/``, ``!`` or
    ``?``) is therefore backslash-escaped (CommonMark renders ``\<`` as a literal ``<``), as is every
    backslash, so that a name's own ``\`` cannot cancel the escape; ``ASD < PSY`` stays as it is. ``|``
    is escaped so that it cannot end a cell.
    """

    def esc(v: object) -> str:
        text = str(v).replace("\\", "\\\\").replace("|", "\\|")
        return _TAG_START.sub(r"\\<", text)

    lines = [f"**Table.** {esc(caption)}", "", "| " + " | ".join(table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_TEX_CHARS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
    "{": r"\{", "}": r"\}", "<": r"$<$", ">": r"$>$", "—": "--", "~": r"\textasciitilde{}", "^": r"\^{}",
}  # fmt: skip


def _tex(v: object) -> str:
    # Character by character, so that one replacement's output is never escaped again.
    return "".join(_TEX_CHARS.get(ch, ch) for ch in str(v))


def to_latex(table: pd.DataFrame, caption: str) -> str:
    """A booktabs LaTeX table (needs ``\\usepackage{booktabs}``)."""
    head = " & ".join(["Action", "Contrast", "Type", "Effect", "$p$", "$p_{\\mathrm{adj}}$"]) + r" \\"
    body = "\n".join(" & ".join(_tex(v) for v in row) + r" \\" for row in table.itertuples(index=False))
    return (
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{{_tex(caption)}}}\n"
        "\\begin{tabular}{llllll}\n\\toprule\n"
        f"{head}\n\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n"
    )
