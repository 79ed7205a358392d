"""Data-subject requests: deletion and objections, the DPO's workflow, certificates."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Flask
from flask_babel import lazy_gettext as _l

from portal.auth.models import Person


def _download_files(person: Person) -> Iterator[tuple[str, bytes]]:
    """Write the person's requests, objections, timelines and certificates (metadata only)."""
    from portal.hashchain import format_time
    from portal.requests import service

    def when(value: object) -> str | None:
        return format_time(value) if value is not None else None  # type: ignore[arg-type]

    def events(item: object) -> list[dict[str, object]]:
        return [{"what": str(event.kind), "when": when(event.occurred_at),
                 "by": event.actor_name, "role": str(event.actor_capacity),
                 "reason": event.reason, "detail": event.detail}
                for event in service.timeline(item)]  # type: ignore[arg-type]

    records = []
    for request in service.own_requests(person):
        records.append({
            "reference": request.reference, "scope": str(request.scope),
            "categories": request.categories, "since": when(request.since),
            "until": when(request.until), "your_reason": request.reason,
            "withdraw_consent": request.withdraw_consent, "state": str(request.state),
            "received_at": when(request.received_at), "due_at": when(request.due_at),
            "extension_reason": request.extension_reason,
            "decision_reason": request.decision_reason,
            "kept": [{"category": item.category_key, "reason": item.reason}
                     for item in request.kept_items],
            "certificate": request.certificate_id, "timeline": events(request)})
        if request.certificate_jws:
            yield (f"deletion-certificate-{request.certificate_id}.jws",
                   (request.certificate_jws + "\n").encode())
    objections = [{"id": objection.id, "category": objection.category_key,
                   "your_reason": objection.reason, "state": str(objection.state),
                   "filed_at": when(objection.filed_at), "due_at": when(objection.due_at),
                   "timeline": events(objection)}
                  for objection in service.own_objections(person)]
    document = {"deletion_requests": records, "objections": objections}
    yield "requests.json", json.dumps(document, indent=2, ensure_ascii=False).encode()


def init_app(app: Flask) -> None:
    """Serve the request pages and the DPO's queue; the commands; the download section."""
    from portal.catalog.models import Objection, ObjectionState
    from portal.consent.receipts import register_document_check
    from portal.exports.sections import DownloadSection, register_section
    from portal.observability.metrics import DeadlineKind, register_deadline_kind
    from portal.requests.certificate import CERTIFICATE_TYPE, check_certificate
    from portal.requests.cli import requests_group
    from portal.requests.holds import deletion_holds
    from portal.requests.models import DeletionRequest, RequestState
    from portal.requests.views import bp, dpo_bp
    from portal.training.rules import register_deletion_holds

    app.register_blueprint(bp)
    app.register_blueprint(dpo_bp)
    app.cli.add_command(requests_group)
    register_deadline_kind(app, DeadlineKind(
        "deletion", DeletionRequest,
        tuple(state.value for state in RequestState if not state.finished)))
    register_deadline_kind(app, DeadlineKind(
        "objection", Objection, (ObjectionState.RECEIVED.value, ObjectionState.EXTENDED.value)))
    # `portal receipts verify` checks certificates of deletion too.
    register_document_check(app, CERTIFICATE_TYPE, check_certificate)
    # Training snapshots leave out what a pending or approved deletion request covers.
    register_deletion_holds(app, deletion_holds)
    register_section(app, DownloadSection(
        key="requests",
        # i18n: a folder of the person's data download
        title=_l("Your requests"),
        explanation=_l("Your deletion requests and objections with every step, decision and "
                       "reason (requests.json), and the signed certificates of deletion "
                       "(.jws files, checked with “portal receipts verify”)."),
        files=_download_files))
