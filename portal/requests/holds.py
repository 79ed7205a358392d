"""What deletion requests hold back from training: read by training snapshots at build time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select

from portal.db import db
from portal.requests.models import DeletionRequest, DeletionScope, RequestState
from portal.training.rules import DeletionHold

#: A request still waiting for the DPO, or approved and not yet carried out: either way, what
#: it covers stays out of training (once executed, the data is gone anyway).
HOLDING_STATES = (RequestState.RECEIVED, RequestState.EXTENDED, RequestState.APPROVED,
                  RequestState.APPROVED_IN_PART, RequestState.CONFIRMED,
                  RequestState.EXECUTING)


def deletion_holds(person_ids: Sequence[int]) -> Iterator[DeletionHold]:
    """Yield what the pending or approved deletion requests of ``person_ids`` cover."""
    requests = db.scalars(select(DeletionRequest).where(
        DeletionRequest.person_id.in_(person_ids), DeletionRequest.state.in_(HOLDING_STATES)))
    for request in requests:
        if request.scope is DeletionScope.CATEGORIES:
            for key in request.categories:
                yield DeletionHold(request.person_id, key)
        elif request.scope is DeletionScope.RANGE:
            yield DeletionHold(request.person_id, None, request.since, request.until)
        else:
            yield DeletionHold(request.person_id)
