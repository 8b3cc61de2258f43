"""Coding media -> manifest videos: by file stem, case-insensitively, ignoring folders.

A coding names its media as the tool saved it: ``C:\\Users\\lab\\Videos\\P01_Visit1.MP4``,
``../videos/p01_visit1.mp4``, ``file:///data/P01_visit1.mp4``, or (Observer, CSV) just ``P01_visit1``.
The key is the last path component (``/`` and ``\\`` both separate folders), without a media suffix
(:data:`MEDIA_SUFFIXES`; another suffix such as ``.1`` in ``P01.1`` is part of the name), Unicode-NFC
and case-folded. The manifest's ``video_id`` is keyed the same way; two manifest videos with one key
(``A.mp4`` and ``a.mov``) make that key ambiguous, and a coding matching it is refused.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from pipeline.codings.raw import CodingError
from pipeline.video import VIDEO_SUFFIXES

__all__ = ["MEDIA_SUFFIXES", "media_key", "VideoMatcher"]

MEDIA_SUFFIXES = tuple(sorted(set(VIDEO_SUFFIXES) | {".mts", ".m2ts", ".ts", ".3gp", ".flv", ".ogv", ".vob", ".dv",
                                                     ".mxf", ".wav", ".mp3"}))


def media_key(name: str) -> str:
    """The matching key of a media name (see the module docstring)."""
    text = re.sub(r"^file:/*", "", str(name).strip())
    last = re.split(r"[\\/]", text.rstrip("\\/"))[-1]
    low = last.lower()
    for suf in MEDIA_SUFFIXES:
        if low.endswith(suf) and len(last) > len(suf):
            last = last[: -len(suf)]
            break
    return unicodedata.normalize("NFC", last).casefold()


class VideoMatcher:
    """Match media names to the manifest's videos (``videos``: the manifest's ``video_id`` column)."""

    def __init__(self, video_ids: pd.Series | list[str]) -> None:
        self.by_key: dict[str, list[str]] = {}
        for vid in list(video_ids):
            self.by_key.setdefault(unicodedata.normalize("NFC", str(vid)).casefold(), []).append(str(vid))

    def match(self, media: str, *, place: str = "") -> str | None:
        """The video id ``media`` names, or None when no manifest video has its stem."""
        hits = self.by_key.get(media_key(media), [])
        if len(hits) > 1:
            raise CodingError(f"{place + ': ' if place else ''}media {media!r} matches several manifest videos "
                              f"({', '.join(hits)}) that differ only in case; rename one")
        return hits[0] if hits else None
