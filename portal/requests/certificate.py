"""Certificates of deletion: a signed JSON statement of what was deleted, and its PDF.

The statement names categories, periods, counts, the destroyed data keys, who decided and
executed, what was kept and why, the training datasets and models that held the person's
records (and whether each dataset was retired or marked outdated), and the check made
afterwards. It holds no collected
content. It is signed like consent receipts (:func:`portal.consent.receipts.sign_document`,
ES256 with the receipt key), is stored with the request so every download is the same
bytes, and is checked offline by ``portal receipts verify``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_babel import format_datetime
from flask_babel import gettext as _

from portal.catalog.document import FALLBACK_LANGUAGE
from portal.catalog.notices import current_notice
from portal.consent import receipts
from portal.consent.service import category_titles
from portal.db import db, utcnow
from portal.hashchain import format_time
from portal.i18n import current_locale
from portal.requests.models import DeletionRequest, DeletionScope
from portal.training import wording as training_wording
from portal.training.overview import describe_training_for, purpose_name
from portal.vault.models import DataKey

CERTIFICATE_TYPE = "deletion-certificate"
CERTIFICATE_VERSION = 1


@dataclass
class DeletionCheck:
    """The outcome of checking an executed deletion."""

    ok: bool
    checked_at: dt.datetime
    problems: list[str] = field(default_factory=list)
    keys_tried: int = 0


def _time(value: dt.datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _who(person: Any) -> str | None:
    return person.display_name if person is not None else None


def training_lineage(person_id: int, categories: Iterable[str] | None = None) -> dict[str, Any]:
    """Return the datasets that held the person's records, and the models trained on them.

    Deleting the records cannot take back what a model learned: the certificate says which
    datasets held them, whether each is retired (key and files destroyed) or marked outdated,
    and which models were trained on them, so that nothing is implied beyond what happened.
    ``categories``: only datasets holding records of these (all categories when None).
    """
    wanted = set(categories) if categories is not None else None
    snapshots: list[dict[str, Any]] = []
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for dataset in describe_training_for(person_id, FALLBACK_LANGUAGE):
        records = {category.key: category.included for category in dataset.categories
                   if category.included and (wanted is None or category.key in wanted)}
        if not records:
            continue
        snapshots.append({
            "number": dataset.number, "purpose": dataset.purpose_key, "state": dataset.state,
            "records": records,
            "outdatedAt": _time(dataset.outdated_at), "retiredAt": _time(dataset.retired_at)})
        for model in dataset.models:
            entry = models.setdefault((model.name, model.version), {
                "name": model.name, "version": model.version,
                "registeredAt": _time(model.registered_at), "snapshots": []})
            entry["snapshots"].append(dataset.number)
    return {"snapshots": snapshots, "models": list(models.values())}


def build_certificate(request: DeletionRequest, check: DeletionCheck, *,
                      certificate_id: str, issued_at: dt.datetime) -> dict[str, Any]:
    """Return the certificate's claims (metadata only)."""
    base_url = str(current_app.config["BASE_URL"])
    person = request.person
    deleted, keys = [], []
    for step in request.steps:
        deleted.append({
            "category": step.category_key, "wholeCategory": step.whole_category,
            "batches": step.batches_deleted, "events": step.events_deleted,
            "collectedFrom": _time(step.first_collected),
            "collectedTo": _time(step.last_collected),
            "consentWithdrawn": step.consent_withdrawn,
            "collectorsNotified": step.collectors_notified, "deletedAt": _time(step.done_at)})
        for key_id in step.destroyed_key_ids:
            key = db.get(DataKey, key_id)
            keys.append({"id": key_id, "category": step.category_key,
                         "destroyedAt": _time(key.destroyed_at if key else None)})
    return {
        "type": CERTIFICATE_TYPE,
        "version": CERTIFICATE_VERSION,
        "iss": base_url,
        "sub": person.subject,
        "iat": int(issued_at.timestamp()),
        "jti": certificate_id,
        "publicKey": base_url + receipts.JWKS_PATH,
        "person": {"name": person.display_name, "email": person.email,
                   "subject": person.subject, "issuer": person.issuer},
        "request": {"reference": request.reference, "receivedAt": _time(request.received_at),
                    "scope": str(request.scope), "categories": list(request.categories),
                    "since": _time(request.since), "until": _time(request.until),
                    "withdrawConsent": request.withdraw_consent},
        "decision": {"state": "approved_in_part" if request.kept_items else "approved",
                     "at": _time(request.decided_at), "by": _who(request.decided_by),
                     "reason": request.decision_reason},
        "confirmation": ({"at": _time(request.confirmed_at), "by": _who(request.confirmed_by)}
                         if request.confirmed_by_id else None),
        "executed": {"startedAt": _time(request.execution_started_at),
                     "at": _time(request.executed_at),
                     "by": _who(request.executed_by) or "portal command"},
        "deleted": deleted,
        "keysDestroyed": keys,
        "kept": [{"category": item.category_key, "reason": item.reason}
                 for item in request.kept_items],
        "totals": {"categories": len(deleted),
                   "batches": sum(item["batches"] for item in deleted),
                   "events": sum(item["events"] for item in deleted),
                   "keysDestroyed": len(keys)},
        "verification": {"checkedAt": _time(check.checked_at), "keysTried": check.keys_tried,
                         "result": "nothing in scope remains; destroyed keys do not decrypt"},
        "training": training_lineage(
            person.id, [item["category"] for item in deleted]),
    }


def issue_certificate(request: DeletionRequest, check: DeletionCheck) -> str:
    """Sign and store the request's certificate; return the compact JWS (flushes)."""
    certificate_id = str(uuid.uuid4())
    claims = build_certificate(request, check, certificate_id=certificate_id,
                               issued_at=utcnow())
    request.certificate_id = certificate_id
    request.certificate_jws = receipts.sign_document(claims)
    db.flush()
    return request.certificate_jws


def check_certificate(claims: dict[str, Any], signed_by: str) -> receipts.ReceiptCheck:
    """Check a certificate's signed claims for consistency (the signature is already checked)."""
    try:
        if claims["version"] != CERTIFICATE_VERSION:
            return receipts.ReceiptCheck(False, f"unknown certificate version "
                                                f"{claims['version']!r}")
        deleted, keys, totals = claims["deleted"], claims["keysDestroyed"], claims["totals"]
        if (totals["batches"] != sum(int(item["batches"]) for item in deleted)
                or totals["events"] != sum(int(item["events"]) for item in deleted)
                or totals["keysDestroyed"] != len(keys)
                or totals["categories"] != len(deleted)):
            return receipts.ReceiptCheck(False, "the totals disagree with the listed deletions")
        whole = {item["category"] for item in deleted if item["wholeCategory"]}
        if any(key["category"] not in whole for key in keys):
            return receipts.ReceiptCheck(False, "a destroyed key belongs to no deleted category")
        kept = {item["category"] for item in claims["kept"]}
        if kept & {item["category"] for item in deleted}:
            return receipts.ReceiptCheck(False, "a category is both deleted and kept")
        # Certificates issued before training datasets existed have no "training" part.
        training = claims.get("training") or {"snapshots": [], "models": []}
        listed = {int(item["number"]) for item in training["snapshots"]}
        if any(int(number) not in listed for model in training["models"]
               for number in model["snapshots"]):
            return receipts.ReceiptCheck(False, "a model names a training dataset the "
                                                "certificate does not list")
        DeletionScope(claims["request"]["scope"])
        summary = (f"certificate of deletion {claims['jti']}: request "
                   f"{claims['request']['reference']}, {totals['categories']} categories, "
                   f"{totals['batches']} batches, {totals['keysDestroyed']} keys destroyed, "
                   f"{len(kept)} kept, executed {claims['executed']['at']}")
    except (KeyError, TypeError, ValueError) as exc:
        return receipts.ReceiptCheck(False, f"a required field is missing or malformed ({exc})")
    return receipts.ReceiptCheck(True, signed_by, claims, summary=summary)


def _local(value: str | None) -> str:
    if not value:
        return ""
    return format_datetime(dt.datetime.fromisoformat(value.replace("Z", "+00:00")), "medium")


def _utc(value: str | None) -> str:
    if not value:
        return ""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def certificate_context(claims: dict[str, Any]) -> dict[str, Any]:
    """Put a certificate into the primitive values its printed form shows, in this language."""
    notice = current_notice()
    titles = category_titles(notice.id, current_locale()) if notice else {}
    request = claims["request"]
    scope = request["scope"]
    if scope == "all":
        scope_words = _("Everything collected about you")
    elif scope == "categories":
        scope_words = _("Chosen categories: %(names)s", names=", ".join(
            titles.get(key, key) for key in request["categories"]))
    else:
        scope_words = _("Everything collected between %(start)s and %(end)s",
                        start=_local(request["since"]), end=_local(request["until"]))
    # Certificates issued before training datasets existed have no "training" part.
    training = claims.get("training") or {"snapshots": [], "models": []}
    language = current_locale()
    return {
        "training_snapshots": [{
            "number": item["number"], "purpose": purpose_name(item["purpose"], language),
            "state": training_wording.state_label(item["state"]),
            "records": [training_wording.category_records(count, titles.get(key, key))
                        for key, count in item["records"].items()],
            "retired_utc": _utc(item["retiredAt"]), "outdated_utc": _utc(item["outdatedAt"]),
        } for item in training["snapshots"]],
        "training_models": [{"name": item["name"], "version": item["version"],
                             "registered_utc": _utc(item["registeredAt"]),
                             "snapshots": ", ".join(str(number)
                                                    for number in item["snapshots"])}
                            for item in training["models"]],
        "reference": claims["jti"],
        "request_reference": request["reference"],
        "person_name": claims["person"]["name"],
        "person_email": claims["person"]["email"],
        "person_subject": claims["person"]["subject"],
        "scope_words": scope_words,
        "received_local": _local(request["receivedAt"]),
        "decided_by": claims["decision"]["by"] or "",
        "decided_local": _local(claims["decision"]["at"]),
        "decision_reason": claims["decision"]["reason"],
        "confirmed_by": (claims["confirmation"] or {}).get("by") or "",
        "executed_by": claims["executed"]["by"],
        "executed_local": _local(claims["executed"]["at"]),
        "executed_utc": _utc(claims["executed"]["at"]),
        "deleted": [{"title": titles.get(item["category"], item["category"]),
                     "key": item["category"], "whole": item["wholeCategory"],
                     "batches": item["batches"], "events": item["events"],
                     "first": _local(item["collectedFrom"]), "last": _local(item["collectedTo"]),
                     "consent_withdrawn": item["consentWithdrawn"],
                     "collectors": item["collectorsNotified"]} for item in claims["deleted"]],
        "keys": [{"id": key["id"], "title": titles.get(key["category"], key["category"]),
                  "destroyed_utc": _utc(key["destroyedAt"])} for key in claims["keysDestroyed"]],
        "kept": [{"title": titles.get(item["category"], item["category"]),
                  "reason": item["reason"]} for item in claims["kept"]],
        "totals": dict(claims["totals"]),
        "checked_utc": _utc(claims["verification"]["checkedAt"]),
        "keys_tried": claims["verification"]["keysTried"],
        "jwks_url": claims["publicKey"],
        "key_id": receipts.key_id(receipts.signing_key()),
        "issued_local": format_datetime(dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
                                        "medium"),
        "portal_url": claims["iss"],
    }
