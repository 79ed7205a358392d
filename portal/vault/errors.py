"""What the vault refuses, and why: the errors its operations raise, for callers to word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from portal.consent.models import ConsentState


class VaultError(Exception):
    """The vault refused or could not do what was asked; the message says why."""


class UnknownCategory(VaultError):
    """The category is not in the catalog in force, so nothing may be collected for it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"category {key!r} is not in the catalog in force")
        self.key = key


@dataclass(frozen=True)
class FieldError:
    """One problem with a batch: where and what is wrong.

    ``path`` is a JSON path into the API's batch body (``$.events[3].x``), or the header
    ``Idempotency-Key``.

    Messages never repeat the submitted value: it may be exactly the content that must not
    end up in a log.
    """

    path: str
    message: str


class BatchInvalid(VaultError):
    """The batch breaks the category's event format or the batch rules; nothing was stored."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{error.path}: {error.message}" for error in errors))
        self.errors = list(errors)


class BatchTooLarge(VaultError):
    """The batch has more events or bytes than one batch may hold; nothing was stored."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the batch has more than {limit} {what}; split it into smaller "
                         "batches")
        self.what = what
        self.limit = limit


class ConsentRequired(VaultError):
    """The person's consent for the category is not current; nothing was stored.

    ``state`` is the current state (``None``: never decided), so the caller can say whether
    consent was withdrawn, refused, expired or never given.
    """

    def __init__(self, person_id: int, category_key: str, state: ConsentState | None) -> None:
        super().__init__(f"no current consent of person {person_id} for {category_key} "
                         f"({state.value if state else 'never given'})")
        self.person_id = person_id
        self.category_key = category_key
        self.state = state


class ObjectionUpheld(VaultError):
    """The category does not rest on consent, and the person's objection to it was upheld.

    From then on nothing more of theirs may be collected in it (GDPR Art. 21(1)).
    """

    def __init__(self, person_id: int, category_key: str) -> None:
        super().__init__(f"person {person_id} objected to {category_key}; the objection was "
                         "upheld")
        self.person_id = person_id
        self.category_key = category_key


class IdempotencyConflict(VaultError):
    """The idempotency key was used before for a different batch; nothing was stored."""

    def __init__(self, public_id: str) -> None:
        super().__init__(f"this idempotency key was already used for batch {public_id}, with "
                         "different content")
        self.public_id = public_id


class VaultIntegrityError(VaultError):
    """Stored content does not open: wrong master key, a moved or altered row.

    Never caught to carry on: a batch that does not authenticate is evidence of tampering or
    of a misconfiguration, and either must stop the operation.
    """

