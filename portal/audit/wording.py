"""What each kind of audit entry means, in words a person reads in their access log.

Every ``what`` key that :func:`portal.audit.service.record` accepts is listed here, so no
entry can reach a person's access log without a translated explanation.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString

from portal.audit.models import AuditAction, AuditRole

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
    "training.snapshot": _l("Read your records into a training dataset"),
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
