"""What each kind of audit entry means, in words a person reads in their access log.

Every ``what`` key that :func:`portal.audit.service.record` accepts is listed here, so no
entry can reach a person's access log without a translated explanation. A feature whose
entries concern many people, each in their own way, registers a describer that words an
entry for one reader (:func:`register_entry_describer`); the fixed label is the fallback.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString

from portal.audit.models import AuditAction, AuditEntry, AuditRole

WHAT: dict[str, LazyString] = {
    # i18n: audit log, something done to the reader's data, by the person in the "who" column.
    "my_data.view": _l("Viewed the data held about you"),
    "my_data.download": _l("Downloaded a copy of the data held about you"),
    "hr.view": _l("Viewed consent records that include yours"),
    "hr.export": _l("Exported consent records that include yours"),
    "requests.submit": _l("Made a request about the data held about you"),
    "requests.cancel": _l("Cancelled your request"),
    "requests.view": _l("Opened your request"),
    "requests.decide": _l("Decided on your request"),
    "requests.execute": _l("Carried out the deletion you requested"),
    "requests.certificate": _l("Issued a certificate of deletion"),
    "vault.purge_expired": _l("Removed data past its retention period"),
    "training.retire": _l("Destroyed a training dataset that held some of your records"),
    "training.snapshot": _l("Read your records into a training dataset, under a pseudonym"),
    # i18n: a training pipeline downloaded a file of a training dataset holding some of the
    # reader's records (under a pseudonym); the detail names the dataset and the purpose.
    "training.download": _l("Downloaded a file of a training dataset that holds some of your "
                            "records, under a pseudonym"),
}

#: Why the portal did what an entry records, for entries that hold no reason in someone's own
#: words: the portal acted on a rule the notice states, not on a person's request.
WHY: dict[str, LazyString] = {
    # i18n: access log, "Why" column of a training dataset's read or download.
    "training.snapshot": _l("To train AI models, for the purpose the notice names"),
    "training.download": _l("To train AI models, for the purpose the notice names"),
    # i18n: access log, "Why" column of a training dataset's retirement.
    "training.retire": _l("The dataset was retired: it can no longer be used for training"),
}

ROLES: dict[AuditRole, LazyString] = {
    AuditRole.SUBJECT: _l("You"),
    AuditRole.HR: _l("HR"),
    AuditRole.DPO: _l("Data protection officer"),
    AuditRole.ADMIN: _l("Privacy administrator"),
    AuditRole.OPERATOR: _l("Server operator"),
    AuditRole.SYSTEM: _l("The portal (automatic)"),
}

ACTIONS: dict[AuditAction, LazyString] = {
    AuditAction.READ: _l("Read"),
    AuditAction.DOWNLOAD: _l("Download"),
    AuditAction.EXPORT: _l("Export"),
    AuditAction.CHANGE: _l("Change"),
    AuditAction.DELETE: _l("Deletion"),
}


#: Words one entry for one reader (entry, the reader's person id, language), or None to fall
#: back on the entry's fixed label.
EntryDescriber = Callable[[AuditEntry, int, str], str | None]
DESCRIBERS = "portal.audit.describers"


def register_entry_describer(app: Flask, what: str, describe: EntryDescriber) -> None:
    """Let a higher feature word the entries ``what`` for each reader of their access log."""
    if what not in WHAT:
        raise ValueError(f"unknown audit key {what!r}: add it to portal.audit.wording.WHAT")
    describers: dict[str, EntryDescriber] = app.extensions.setdefault(DESCRIBERS, {})
    if what in describers:
        raise ValueError(f"a describer of {what!r} entries is already registered")
    describers[what] = describe


def describe_entry(entry: AuditEntry, person_id: int, language: str) -> str:
    """Say what ``entry`` did to the data of the person ``person_id``, in their language."""
    describe = current_app.extensions.get(DESCRIBERS, {}).get(entry.what)
    described = describe(entry, person_id, language) if describe is not None else None
    return described or str(WHAT.get(entry.what, entry.what))
