"""Collected data as collectors send it: moments, events and batch bodies."""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any


def recent(minutes_ago: float) -> dt.datetime:
    """Return a moment ``minutes_ago`` before now, in UTC, to the millisecond."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: dt.datetime) -> str:
    """Write a moment as collectors do."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def keystroke_events(*texts: str, start: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Return keystroke events typing ``texts``, one second apart from ``start``."""
    start = start or recent(30)
    return [{"t": iso(start + dt.timedelta(seconds=index)), "app": "code editor", "keys": text,
             "duration_ms": 100 * len(text)} for index, text in enumerate(texts)]


def keystroke_batch(subject: str, *texts: str, minutes_ago: float = 30) -> dict[str, Any]:
    """Return a valid keystrokes batch body typing ``texts``, one second apart."""
    start = recent(minutes_ago)
    events = [{"t": iso(start + dt.timedelta(seconds=index)), "app": "terminal", "keys": text,
               "duration_ms": 100 * len(text)} for index, text in enumerate(texts or ("ls",))]
    return {"subject": subject, "category": "keystrokes", "collected_from": iso(start),
            "collected_to": iso(start + dt.timedelta(seconds=len(events))), "dss_level": 2,
            "events": events}


def gzipped(data: bytes) -> bytes:
    """Compress like a collector would.

    mtime is fixed so that parametrized ids built from gzip bytes are the same in
    every pytest-xdist worker (they must collect identical test ids).
    """
    return gzip.compress(data, compresslevel=6, mtime=0)
