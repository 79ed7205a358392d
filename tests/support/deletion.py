"""Data-subject deletion requests in tests: the people of a request, their collected data, a
request taken to a state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from portal.auth.models import Person
from portal.db import commit
from portal.requests import service
from portal.requests.models import DeletionRequest, DeletionScope
from tests.support.batches import keystroke_events, recent
from tests.support.factories import grant
from tests.support.vault import ingest


@dataclass
class Cast:
    """The people of a deletion test, with some of Alex's data collected."""

    alex: Person
    dana: Person
    dora: Person


def collect(alex: Person) -> None:
    """Give consent for keystrokes and clicks and store two keystroke batches and one of clicks."""
    grant(alex, "keystrokes")
    grant(alex, "pointer")
    ingest(alex, "keystrokes", keystroke_events("alpha-typed", "beta-typed", start=recent(300)))
    ingest(alex, "keystrokes", keystroke_events("gamma-typed", start=recent(60)))
    start = recent(90)
    ingest(alex, "pointer", [{"t": (start + dt.timedelta(seconds=index)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z"), "x": index, "y": index,
        "screen": 1, "app": "browser"} for index in range(3)])


def approved(cast: Cast, *, scope: DeletionScope = DeletionScope.ALL,
             **options: Any) -> DeletionRequest:
    """Submit a request of Alex and have Dana approve it (committed)."""
    request = service.submit_deletion_request(cast.alex, scope=scope, **options)
    service.approve_deletion(request, dpo=cast.dana)
    commit()
    return request
