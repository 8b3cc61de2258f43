"""The grid of a power analysis: designs, the settings hash, running the chunks (workers, resume), tables.

Work is cut into chunks of replicates; each is written atomically into
``<out>/.power-chunks/<settings hash>/`` when done and reused by a later run with the same settings
(the hash covers everything that changes a number, not ``nsim``, the grid or the workers), so an
interrupted or extended run only computes what is missing. Results do not depend on the number of
workers or the chunk size (each replicate has its own seed, :mod:`analysis.power_sim`).

Workers are ``concurrent.futures.ProcessPoolExecutor`` processes (spawn start method) that ignore
SIGINT; on Ctrl-C (or any error) the parent cancels the queued work and terminates them, so no worker
outlives the run, and the chunks already finished stay for the next run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from pipeline.artifacts import atomic_write_bytes
from pipeline.cli import BadInput, progress

from .config import HurdleConfig
from .power_config import PowerConfig
from .power_sim import Task, analysis_config, family_index, run_task, analysis_tests
from .power_spec import PowerModel

__all__ = ["LEADING_COLUMNS", "TRAILING_COLUMNS", "STAGE", "OUTPUTS", "CHUNK_DIR", "PowerResult", "parse_groups", "parse_range",
           "designs", "settings_hash", "run_power", "power_table", "sample_sizes", "family_table"]  # fmt: skip

log = logging.getLogger(__name__)

LEADING_COLUMNS: list[str] = ["action", "part", "contrast", "n_total", "power", "mc_low", "mc_high"]
TRAILING_COLUMNS: list[str] = ["power_unadjusted", "tested", "null", "effect", "nsim"]
STAGE = "power"
OUTPUTS: tuple[str, ...] = ("power.parquet", "power.csv", "sample_size.csv", "family.csv", "power_curves.png",
                            "summary.md", "summary.html")  # fmt: skip
CHUNK_DIR = ".power-chunks"
_FORMAT_VERSION = 1  # part of the settings hash: bump when a change alters simulated numbers


# --------------------------------------------------------------------------------------------------
# designs and hashing
# --------------------------------------------------------------------------------------------------


def parse_groups(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``ASD=40,PSY=20,TDC=40`` -> (labels, sizes)."""
    labels, sizes = [], []
    for item in text.split(","):
        name, sep, n = item.partition("=")
        name = name.strip()
        try:
            size = int(n)
        except ValueError:
            raise BadInput(f"--groups: expected GROUP=N[,GROUP=N...], got {text!r}") from None
        if not sep or not name:
            raise BadInput(f"--groups: expected GROUP=N[,GROUP=N...], got {text!r}")
        labels.append(name)
        sizes.append(size)
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise BadInput(f"--groups: need at least 2 distinct groups, got {', '.join(labels)}")
    return tuple(labels), tuple(sizes)


def parse_range(text: str) -> list[int]:
    """``LO:HI:STEP`` (inclusive) -> totals."""
    try:
        lo, hi, step = (int(v) for v in text.split(":"))
    except ValueError:
        raise BadInput(f"--n-range: expected LO:HI:STEP (integers), got {text!r}") from None
    if step < 1 or lo < 1 or hi < lo:
        raise BadInput(f"--n-range: need 1 <= LO <= HI and STEP >= 1, got {text!r}")
    return list(range(lo, hi + 1, step))


def designs(labels: Sequence[str], sizes: Sequence[int], totals: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Group sizes of every design: ``sizes`` itself, or each total split in its proportions.

    Largest-remainder rounding (ties to the earlier group). Raises BadInput when a group would have
    fewer than 2 participants (one participant gives no variance to test).
    """
    out = []
    if totals is None:
        out = [tuple(int(s) for s in sizes)]
    else:
        w = np.asarray(sizes, dtype=np.float64)
        if np.any(w <= 0):
            raise BadInput(f"--groups: every group needs a positive size, got {dict(zip(labels, sizes))}")
        for t in totals:
            raw = t * w / w.sum()
            base = np.floor(raw).astype(int)
            order = sorted(range(len(w)), key=lambda j: (-(raw[j] - base[j]), j))
            for j in order[: t - int(base.sum())]:
                base[j] += 1
            out.append(tuple(int(b) for b in base))
    for d in out:
        small = [f"{g}={n}" for g, n in zip(labels, d) if n < 2]
        if small:
            raise BadInput(f"design with n_total {sum(d)}: group {small[0]} is smaller than 2; every group needs "
                           "at least 2 participants (raise LO of --n-range or the group's share)")  # fmt: skip
    return list(dict.fromkeys(out))


def settings_hash(model: PowerModel, config: HurdleConfig, settings: PowerConfig, engine: str) -> str:
    """sha256 of everything that changes a simulated number (not nsim, the grid, workers or chunk)."""
    blob = json.dumps({"model": asdict(model), "analysis": asdict(config), "alpha": settings.alpha, "seed": settings.seed,
                       "fps": settings.fps, "engine": engine, "version": _FORMAT_VERSION},
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# running the grid
# --------------------------------------------------------------------------------------------------


def _chunk_name(sizes: tuple[int, ...], start: int, stop: int) -> str:
    return f"n{'-'.join(map(str, sizes))}_{start}-{stop}.npz"


def _save_chunk(path: Path, counts: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **counts)
    atomic_write_bytes(path, buf.getvalue())


def _load_chunk(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):  # a damaged file is recomputed
        return None


def _ignore_sigint() -> None:
    # Workers leave Ctrl-C to the parent, which stops them (no half-written chunk, no orphan).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and end the worker processes now (Ctrl-C or an error in the parent)."""
    procs = list(getattr(pool, "_processes", {}).values())  # the pool keeps no public handle on them
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)


@dataclass
class PowerResult:
    """The aggregated counts of a run: per design, the summed chunk counts."""

    model: PowerModel
    config: HurdleConfig
    settings: PowerConfig
    engine: str
    designs: list[tuple[int, ...]]
    counts: dict[tuple[int, ...], dict[str, np.ndarray]]
    hash: str
    reused: int
    computed: int
    seconds: float


def run_power(model: PowerModel, config: HurdleConfig, settings: PowerConfig, grid: Sequence[tuple[int, ...]],
              *, workers: int = 1, cache: str | os.PathLike | None = None, show_progress: bool = False) -> PowerResult:  # fmt: skip
    """Simulate and analyse every design of ``grid``; chunks reused from / written to ``cache``.

    Parameters
    ----------
    model : PowerModel
    config : HurdleConfig
        The planned analysis (its groups must be the model's).
    settings : PowerConfig
    grid : sequence of tuple of int
        Group sizes of each design (see :func:`designs`).
    workers : int
        Processes (``concurrent.futures.ProcessPoolExecutor``, spawn); 1 = in this process.
    cache : path, optional
        Folder of the chunk files (``<out>/.power-chunks``); None = nothing kept.
    show_progress : bool
    """
    engine = settings.engine if settings.engine != "auto" else ("full" if config.covariates else "fast")
    if engine == "fast" and config.covariates:
        raise BadInput("--engine fast handles groups-only analyses; with covariates use --engine full (or auto)")
    cfg = analysis_config(model, config)
    h = settings_hash(model, cfg, settings, engine)
    folder = Path(cache) / h[:16] if cache is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    tasks, parts = [], {}
    for d in grid:
        for start in range(0, settings.nsim, settings.chunk):
            stop = min(settings.nsim, start + settings.chunk)
            tasks.append(Task(model=model, config=cfg, sizes=d, start=start, stop=stop, seed=settings.seed,
                              alpha=settings.alpha, fps=settings.fps, engine=engine))  # fmt: skip
    todo = []
    for t in tasks:
        got = _load_chunk(folder / _chunk_name(t.sizes, t.start, t.stop)) if folder is not None and (
            folder / _chunk_name(t.sizes, t.start, t.stop)).is_file() else None  # fmt: skip
        if got is not None:
            parts[(t.sizes, t.start)] = got
        else:
            todo.append(t)
    reused = len(tasks) - len(todo)
    if reused:
        log.info("reusing %d of %d chunks from %s", reused, len(tasks), folder)
    t0 = time.perf_counter()
    bar = progress(range(len(todo)), desc="power", total=len(todo), unit="chunk") if show_progress else None

    def done(t: Task, counts: dict[str, np.ndarray]) -> None:
        if folder is not None:
            _save_chunk(folder / _chunk_name(t.sizes, t.start, t.stop), counts)
        parts[(t.sizes, t.start)] = counts
        if bar is not None:
            bar.update(1)

    try:
        if workers <= 1 or len(todo) <= 1:
            for t in todo:
                done(t, run_task(t))
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_sigint)
            try:
                pending = {pool.submit(run_task, t): t for t in todo}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        done(pending.pop(f), f.result())
            except BaseException:
                _stop_pool(pool)
                raise
            pool.shutdown(wait=True)
    finally:
        if bar is not None:
            bar.close()
    counts = {}
    for d in grid:
        chunks = [parts[(d, s)] for s in range(0, settings.nsim, settings.chunk)]
        counts[d] = {k: np.sum([c[k] for c in chunks], axis=0) for k in chunks[0]}
    return PowerResult(model, cfg, settings, engine, list(grid), counts, h, reused, len(todo), time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


def _effects(model: PowerModel, keys: pd.DataFrame) -> np.ndarray:
    """True effect of each test: odds ratio of engagement / ratio of mean fractions, group_a vs group_b."""
    gi = {g: j for j, g in enumerate(model.groups)}
    ai = {a: i for i, a in enumerate(model.actions)}
    out = []
    for r in keys.itertuples(index=False):
        ca, cb = model.cells[ai[r.action]][gi[r.group_a]], model.cells[ai[r.action]][gi[r.group_b]]
        if r.part == "probability":
            pa, pb = ca.engage, cb.engage
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(float((pa / (1 - pa)) / (pb / (1 - pb))) if 0 < pb < 1 and 0 < pa < 1 else float("nan"))
        else:
            out.append(ca.mean_share / cb.mean_share)
    return np.asarray(out)


def power_table(res: PowerResult) -> pd.DataFrame:
    """One row per action x part x contrast x design (module docstring for the columns)."""
    keys = analysis_tests(res.model)
    eff = _effects(res.model, keys)
    frames = []
    for d in sorted(res.designs, key=lambda d: (sum(d), d)):
        c = res.counts[d]
        n = int(c["nsim"][0])
        lo, hi = proportion_confint(c["reject"], n, alpha=0.05, method="beta")
        df = keys[["action", "part", "contrast"]].copy()
        df["n_total"] = int(sum(d))
        df["power"] = c["reject"] / n
        df["mc_low"] = np.nan_to_num(lo, nan=0.0)
        df["mc_high"] = np.nan_to_num(hi, nan=1.0)
        for g, ng in zip(res.model.groups, d):
            df[f"n_{g}"] = int(ng)
        df["power_unadjusted"] = c["reject_raw"] / n
        df["tested"] = c["tested"] / n
        df["null"] = keys["null"].to_numpy()
        df["effect"] = eff
        df["nsim"] = n
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    order = {c: {v: i for i, v in enumerate(dict.fromkeys(keys[c]))} for c in ("action", "part", "contrast")}
    return out.sort_values(["action", "part", "contrast", "n_total"], kind="mergesort",
                           key=lambda s: s.map(order[s.name]) if s.name in order else s).reset_index(drop=True)


def sample_sizes(table: pd.DataFrame, groups: Sequence[str], targets: Sequence[float]) -> pd.DataFrame:
    """Smallest design of the grid whose power reaches each target, per action x part x contrast.

    ``n_total`` and ``n_<GROUP>`` are missing when no design of the grid reaches the target.
    ``mc_low`` is the lower MC bound at that design (power may sit below the target within MC error).
    """
    rows = []
    ncols = [f"n_{g}" for g in groups]
    for (a, p, c), sub in table.groupby(["action", "part", "contrast"], sort=False):
        sub = sub.sort_values("n_total")
        for t in targets:
            hit = sub[sub["power"] >= t]
            row = {"action": a, "part": p, "contrast": c, "target": t}
            if len(hit):
                h = hit.iloc[0]
                row.update(n_total=int(h["n_total"]), power=float(h["power"]), mc_low=float(h["mc_low"]),
                           **{k: int(h[k]) for k in ncols})  # fmt: skip
            else:
                row.update(n_total=None, power=float(sub["power"].max()), mc_low=None, **{k: None for k in ncols})
            rows.append(row)
    df = pd.DataFrame(rows)
    for k in ["n_total", *ncols]:
        df[k] = df[k].astype("Int64")
    return df


def family_table(res: PowerResult) -> pd.DataFrame:
    """Per design and correction family: familywise error (any true null rejected), FDR, any rejection."""
    keys = analysis_tests(res.model)
    fams = family_index(keys, res.config.family)
    rows = []
    for d in sorted(res.designs, key=lambda d: (sum(d), d)):
        c = res.counts[d]
        n = int(c["nsim"][0])
        for j, (name, idx) in enumerate(fams):
            rows.append({"family": name, "n_total": int(sum(d)), "tests": len(idx), "true_nulls": int(keys["null"].to_numpy()[idx].sum()),
                         "fwer": c["fam_any_null"][j] / n, "fdr": c["fam_fdp"][j] / n, "any_rejection": c["fam_any"][j] / n,
                         "mean_rejections": c["fam_rejections"][j] / n, "nsim": n,
                         **{f"n_{g}": int(ng) for g, ng in zip(res.model.groups, d)}})  # fmt: skip
    return pd.DataFrame(rows)


