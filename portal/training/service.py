"""Training clients, their requests for dataset snapshots, and the models they register.

A training client is registered like a collector (its token stored only as a SHA-256, its
webhook secret sealed); it declares the purposes it trains for, and may ask for snapshots only
for those, of categories whose notice allows the purpose. Asking writes a queued snapshot and
nothing else: the workers of :mod:`portal.training.build` read the vault later. Functions here
only flush; the request or the command commits.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.api.service import (
    MAX_TOKEN_LENGTH,
    hash_token,
    new_webhook_secret,
    open_secret,
    seal_secret,
    webhook_url_problem,
)
from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.catalog.notices import current_notice
from portal.db import db, utcnow
from portal.training.keys import new_snapshot_key
from portal.training.models import (
    SnapshotHolding,
    SnapshotState,
    TrainedModel,
    TrainedModelSnapshot,
    TrainingClient,
    TrainingScope,
    TrainingSnapshot,
)

MAX_NAME_LENGTH = 100
MAX_MODEL_NAME_LENGTH = 255
MAX_MODEL_VERSION_LENGTH = 64
#: More categories than any catalog has: a longer list is a mistake, not a request.
MAX_CATEGORIES = 64
MAX_SNAPSHOTS_PER_MODEL = 1000
#: How often asking for a snapshot tries again when another request took its number first.
NUMBER_ATTEMPTS = 5
#: A model may name only snapshots that were built (retired ones too: it was trained before).
TRAINABLE = frozenset({SnapshotState.READY, SnapshotState.RETIRED})


# --- training clients ------------------------------------------------------------------------

class ClientRefused(ValueError):
    """A training client could not be registered as asked; ``problems`` maps each field to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems.items()))
        self.problems = problems


def defined_purposes(notice: NoticeVersion | None = None) -> list[str]:
    """Return the keys of the training purposes the notice in force defines (default)."""
    notice = notice or current_notice()
    if notice is None:
        return []
    return sorted(notice.document.get("training_purposes", {}))


def create_client(name: str, *, purposes: Iterable[str], scopes: Iterable[str | TrainingScope],
                  webhook_url: str = "") -> tuple[TrainingClient, str]:
    """Check the request, then register a training client; return it with its token.

    The token exists in clear only in the return value: show it once. The webhook secret is
    stored sealed; :func:`open_webhook_secret` shows it (once, to the one who registered).

    :raise ClientRefused: the name is empty, too long or taken; a purpose is not defined by
        the notice in force; a scope is unknown; the webhook is not an http(s) URL.
    """
    problems: dict[str, str] = {}
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        problems["name"] = f"must be 1 to {MAX_NAME_LENGTH} printable characters"
    elif find_client(name) is not None:
        problems["name"] = "is taken by another training client (revoked ones keep their names)"
    keys = sorted({key.strip() for key in purposes if key.strip()})
    known = defined_purposes()
    if not keys:
        problems["purposes"] = "must name at least one training purpose"
    elif unknown := [key for key in keys if key not in known]:
        problems["purposes"] = ("are not training purposes of the notice in force: "
                                + ", ".join(unknown) + " (defined: "
                                + (", ".join(known) or "none") + ")")
    scope_values = {str(scope).strip() for scope in scopes if str(scope).strip()}
    all_scopes = [scope.value for scope in TrainingScope]
    if not scope_values:
        problems["scopes"] = "must name at least one of: " + ", ".join(all_scopes)
    elif unknown := sorted(scope_values - set(all_scopes)):
        problems["scopes"] = ("are not scopes of the training API: " + ", ".join(unknown)
                              + " (known: " + ", ".join(all_scopes) + ")")
    webhook_url = webhook_url.strip()
    if webhook_url and (problem := webhook_url_problem(webhook_url)):
        problems["webhook_url"] = problem
    if problems:
        raise ClientRefused(problems)
    token = secrets.token_urlsafe(32)
    webhook_secret = new_webhook_secret()
    client = TrainingClient(
        name=name, purposes=keys, scopes=[scope for scope in all_scopes if scope in scope_values],
        webhook_url=webhook_url, webhook_secret_sealed=seal_secret(webhook_secret),
        token_hash=hash_token(token))
    db.add(client)
    db.flush()
    return client, token


def open_webhook_secret(client: TrainingClient) -> str:
    """Return the client's webhook secret in clear (to sign notices, or to show it once)."""
    return open_secret(client.webhook_secret_sealed)


def find_client(name: str) -> TrainingClient | None:
    """Return the training client called ``name``, revoked or not."""
    return db.scalar(select(TrainingClient).where(TrainingClient.name == name))


def list_clients() -> list[TrainingClient]:
    """Return every training client: active ones first, then by name."""
    return list(db.scalars(select(TrainingClient).order_by(
        TrainingClient.revoked_at.is_not(None), TrainingClient.name)))


def revoke_client(client: TrainingClient) -> bool:
    """Revoke a training client's token at once; return ``False`` if it was revoked already.

    Its snapshots stay as they are (retiring them is a separate, deliberate step).
    """
    if client.revoked_at is not None:
        return False
    client.revoked_at = utcnow()
    db.flush()
    return True


def identify_training_client(token: str) -> TrainingClient | None:
    """Return the training client holding ``token`` (revoked ones too), looked up by its hash.

    As for collectors: the hash is looked up, never the token compared.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return db.scalar(select(TrainingClient)
                     .where(TrainingClient.token_hash == hash_token(token)))


def is_training_token(token: str) -> bool:
    """Say whether ``token`` belongs to a training client (to word a refusal elsewhere)."""
    return identify_training_client(token) is not None


# --- asking for snapshots --------------------------------------------------------------------

class SnapshotRefused(Exception):
    """A request of a training client refused, nothing written: status, code, a sentence."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class SnapshotAsk:
    """What a training client asks for: records of some categories, of a period, for a purpose.

    ``collected_from`` and ``collected_to`` are aware datetimes (the period is half-open:
    records collected from the first moment up to, not including, the second).
    """

    purpose: str
    categories: Sequence[str]
    collected_from: dt.datetime
    collected_to: dt.datetime
    max_dss_level: int


def allowed_purposes(category_key: str) -> list[str]:
    """Return the training purposes the notice in force allows for ``category_key``.

    Empty for a category the notice never lets into training, and for one not in it.
    """
    notice = current_notice()
    if notice is None:
        return []
    content = db.scalar(select(CategoryNotice.content).where(
        CategoryNotice.notice_version_id == notice.id,
        CategoryNotice.category_key == category_key))
    return list((content or {}).get("training_purposes", []))


def _check_ask(client: TrainingClient, ask: SnapshotAsk, notice: NoticeVersion) -> None:
    """Refuse what cannot be asked for, with a sentence that says what to change."""
    if ask.purpose not in (client.purposes or []):
        raise SnapshotRefused(
            403, "purpose_not_declared", f"This training client is not registered for the "
            f"purpose {ask.purpose!r}; it may ask for: {', '.join(client.purposes or [])}. "
            "Nothing was queued.", field="$.purpose")
    if not ask.categories:
        raise SnapshotRefused(400, "invalid_request", "Name at least one category. Nothing "
                              "was queued.", field="$.categories")
    if len(ask.categories) > MAX_CATEGORIES:
        raise SnapshotRefused(400, "invalid_request", f"Name at most {MAX_CATEGORIES} "
                              "categories. Nothing was queued.", field="$.categories")
    doubled = sorted({key for key in ask.categories if ask.categories.count(key) > 1})
    if doubled:
        raise SnapshotRefused(400, "invalid_request", "Each category may be named once; "
                              f"named more than once: {', '.join(doubled)}. Nothing was queued.",
                              field="$.categories")
    sections = {section.category_key: section for section in notice.sections}
    unknown = [key for key in ask.categories if key not in sections]
    if unknown:
        raise SnapshotRefused(
            422, "unknown_category", f"Not categories of notice version {notice.number} (the "
            f"one in force): {', '.join(unknown)}. Known: {', '.join(sections)}. Nothing was "
            "queued.", field="$.categories")
    refusing = [key for key in ask.categories
                if ask.purpose not in sections[key].content.get("training_purposes", [])]
    if refusing:
        raise SnapshotRefused(
            403, "purpose_not_allowed", f"The notice in force does not allow records of "
            f"{', '.join(refusing)} to be used for the purpose {ask.purpose!r}: the people "
            "were never told their records could train for it. Nothing was queued.",
            field="$.categories")
    if ask.collected_from >= ask.collected_to:
        raise SnapshotRefused(
            422, "empty_period", "The period is empty: collected_from must be before "
            "collected_to. Nothing was queued.", field="$.collected_to")
    now = utcnow()
    if ask.collected_to > now:
        raise SnapshotRefused(
            422, "period_in_future", "The period reaches into the future: collected_to must "
            f"not be later than now ({now:%Y-%m-%dT%H:%M:%SZ}), since records still to come "
            "cannot be checked against consent. Nothing was queued.", field="$.collected_to")
    if not 1 <= ask.max_dss_level <= 4:
        raise SnapshotRefused(400, "invalid_request", "max_dss_level must be 1, 2, 3 or 4. "
                              "Nothing was queued.", field="$.max_dss_level")


def request_snapshot(client: TrainingClient, ask: SnapshotAsk) -> TrainingSnapshot:
    """Queue a snapshot for ``client`` as asked; the workers build it later.

    The purpose and categories are checked against the notice in force now, whose version
    the snapshot keeps; consent, objections and deletions are read when it is built.

    :raise SnapshotRefused: the purpose is not the client's, or the notice does not allow it
        for a category; a category is unknown, missing or named twice; the period is empty
        or reaches into the future; the DSS level is not 1 to 4. Nothing is written.
    """
    notice = current_notice()
    if notice is None:
        raise SnapshotRefused(409, "no_notice", "No notice is published yet, so no record may "
                              "be used for training. Nothing was queued.")
    _check_ask(client, ask, notice)
    for attempt in range(NUMBER_ATTEMPTS):
        number = (db.scalar(select(func.max(TrainingSnapshot.number))) or 0) + 1
        snapshot = TrainingSnapshot(
            number=number, client_id=client.id, purpose_key=ask.purpose,
            categories=list(ask.categories), collected_from=ask.collected_from,
            collected_to=ask.collected_to, max_dss_level=ask.max_dss_level,
            notice_version_id=notice.id, state=SnapshotState.QUEUED, totals={})
        # The key is wrapped bound to the public id, so it is chosen before the key is made.
        snapshot.public_id = str(uuid.uuid4())
        new_snapshot_key(snapshot)
        try:
            # A savepoint: another request that took this number first must not undo the
            # rest of the unit of work; the next attempt takes the number after it.
            with db.begin_nested():
                db.add(snapshot)
                db.flush()
        except IntegrityError:
            if attempt == NUMBER_ATTEMPTS - 1:
                raise
            continue
        return snapshot
    raise AssertionError("unreachable")  # pragma: no cover


def get_own_snapshot(client: TrainingClient, public_id: str) -> TrainingSnapshot:
    """Return the client's snapshot ``public_id``.

    :raise SnapshotRefused: 404 when there is none, or it is another client's (the same
        answer: a client does not learn which snapshots others have).
    """
    snapshot = db.scalar(select(TrainingSnapshot).where(
        TrainingSnapshot.public_id == public_id[:64], TrainingSnapshot.client_id == client.id))
    if snapshot is None:
        raise SnapshotRefused(404, "not_found", f"This client has no snapshot {public_id!r}.")
    return snapshot


def record_download(client: TrainingClient, snapshot: TrainingSnapshot, path: str) -> None:
    """Log, in the access log of everyone whose records it holds, that a file leaves the portal.

    Called before the file is read: if the entry cannot be queued, nothing is sent.
    """
    people = db.scalars(select(SnapshotHolding.person_id).distinct().where(
        SnapshotHolding.snapshot_id == snapshot.id, SnapshotHolding.included > 0))
    record("training.download", action=AuditAction.DOWNLOAD, role=AuditRole.SYSTEM,
           subjects=list(people), actor_name=f"training client {client.name}",
           purpose=snapshot.purpose_key,
           detail={"snapshot": snapshot.number, "purpose": snapshot.purpose_key, "file": path})


# --- models ----------------------------------------------------------------------------------

def register_model(client: TrainingClient, name: str, version: str,
                   snapshot_public_ids: Sequence[str]) -> TrainedModel:
    """Record that ``client`` trained model ``name`` ``version`` on some of its snapshots.

    :raise SnapshotRefused: the name or version is empty or too long, no snapshot is named
        (400); a snapshot is not one of the client's (404); one is not built (409); the
        model ``name`` ``version`` is registered already (409). Nothing is written.
    """
    name, version = name.strip(), version.strip()
    if not name or len(name) > MAX_MODEL_NAME_LENGTH or not name.isprintable():
        raise SnapshotRefused(400, "invalid_request", f"name must be 1 to "
                              f"{MAX_MODEL_NAME_LENGTH} printable characters. Nothing was "
                              "registered.", field="$.name")
    if not version or len(version) > MAX_MODEL_VERSION_LENGTH or not version.isprintable():
        raise SnapshotRefused(400, "invalid_request", f"version must be 1 to "
                              f"{MAX_MODEL_VERSION_LENGTH} printable characters. Nothing was "
                              "registered.", field="$.version")
    wanted = list(dict.fromkeys(snapshot_public_ids))
    if not wanted or len(wanted) > MAX_SNAPSHOTS_PER_MODEL:
        raise SnapshotRefused(400, "invalid_request", "Name the snapshots the model was "
                              f"trained on (1 to {MAX_SNAPSHOTS_PER_MODEL}). Nothing was "
                              "registered.", field="$.snapshots")
    found = {snapshot.public_id: snapshot for snapshot in db.scalars(
        select(TrainingSnapshot).where(TrainingSnapshot.public_id.in_(wanted),
                                       TrainingSnapshot.client_id == client.id))}
    missing = [public_id for public_id in wanted if public_id not in found]
    if missing:
        raise SnapshotRefused(404, "unknown_snapshot", "This client has no snapshot "
                              + ", ".join(missing[:10]) + ". Nothing was registered.",
                              field="$.snapshots")
    unbuilt = [snapshot for snapshot in found.values() if snapshot.state not in TRAINABLE]
    if unbuilt:
        raise SnapshotRefused(
            409, "snapshot_not_ready", "A model can only be trained on a snapshot that is "
            "ready; not ready: " + ", ".join(f"{snapshot.public_id} ({snapshot.state.value})"
                                             for snapshot in unbuilt[:10])
            + ". Nothing was registered.", field="$.snapshots")
    model = TrainedModel(client_id=client.id, name=name, version=version)
    try:
        with db.begin_nested():
            db.add(model)
            db.flush()
    except IntegrityError:
        raise SnapshotRefused(409, "model_exists", f"Model {name!r} version {version!r} is "
                              "registered already; register a new version instead. Nothing "
                              "was registered.") from None
    db.add_all(TrainedModelSnapshot(model_id=model.id, snapshot_id=found[public_id].id)
               for public_id in wanted)
    db.flush()
    return model

