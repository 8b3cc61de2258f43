"""Spreadsheet-like sources as rows of text cells with their place: CSV/TSV/TXT and XLSX.

The exports of BORIS and The Observer and the plain CSV form are tables; this module reads them
once, the same way for every reader:

- text files: UTF-8 (a byte-order mark is dropped; UTF-16 with a BOM is read too, as Excel saves
  "Unicode text"), any line ends (CRLF, LF, CR), the delimiter guessed from the header line (tab,
  comma or semicolon, whichever splits it most), quotes as in RFC 4180 (:mod:`csv`);
- XLSX: every worksheet (pandas + openpyxl), cells as text (a number is written back without a
  trailing ``.0`` when it is whole), empty cells as ``""``.

Each row is a :class:`Row`: its cells (stripped) and its place (``line 7``; ``sheet obs1 row 7``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.codings.raw import CodingError

__all__ = ["Row", "read_rows", "is_blank", "parse_seconds", "TEXT_SUFFIXES", "SHEET_SUFFIXES"]

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
SHEET_SUFFIXES = (".xlsx", ".xlsm")


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    ref: str        # "line 7" or "sheet obs1 row 7"
    sheet: str = ""  # worksheet name ("" for text files)

    def get(self, i: int | None) -> str:
        return self.cells[i] if i is not None and i < len(self.cells) else ""


def is_blank(row: Row) -> bool:
    return not any(row.cells)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CodingError(f"{path}: not UTF-8 text (save the export as UTF-8)") from None


def _delimiter(text: str) -> str:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    counts = {d: first.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if v.is_integer():
            return str(int(v))
        return repr(v)
    return str(v).strip()


def read_rows(path: str | Path) -> list[Row]:
    """All rows of a CSV/TSV/TXT or XLSX file (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SHEET_SUFFIXES:
        import pandas as pd

        try:
            sheets = pd.read_excel(path, sheet_name=None, header=None, dtype=object, engine="openpyxl")
        except Exception as exc:  # openpyxl raises several types for a damaged workbook
            raise CodingError(f"{path}: cannot read the workbook ({type(exc).__name__}: {exc})") from None
        rows = []
        for name, df in sheets.items():
            for i, rec in enumerate(df.itertuples(index=False, name=None)):
                rows.append(Row(tuple(_cell(v) for v in rec), f"sheet {name} row {i + 1}", str(name)))
        return rows
    try:
        text = _decode(path)
    except OSError as exc:
        raise CodingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    rows = []
    try:
        for rec in reader:
            rows.append(Row(tuple(c.strip() for c in rec), f"line {reader.line_num}"))
    except csv.Error as exc:
        raise CodingError(f"{path}: line {reader.line_num}: {exc}") from None
    return rows


def parse_seconds(text: str, *, what: str, place: str) -> float:
    """A time in seconds: ``12.5``, ``12,5`` (decimal comma) or ``hh:mm:ss.sss``; CodingError otherwise."""
    t = text.strip()
    try:
        if ":" in t:
            parts = [float(p.replace(",", ".")) for p in t.split(":")]
            value = 0.0
            for p in parts:
                value = value * 60 + p
        else:
            value = float(t.replace(",", ".") if t.count(",") == 1 and "." not in t else t)
    except ValueError:
        raise CodingError(f"{place}: {what} {text!r} is not a time in seconds") from None
    if not math.isfinite(value):
        raise CodingError(f"{place}: {what} {text!r} is not a finite time")
    return value
