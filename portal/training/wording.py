"""How training datasets read to people: why records were left out, states, the access log.

One sentence per :class:`ExclusionReason`, with its plural forms, so the person's page, their
download and the administrator's page say the same thing in every language.
"""

from __future__ import annotations

from flask_babel import force_locale, format_number, ngettext
from flask_babel import gettext as _

from portal.audit.models import AuditEntry
from portal.audit.service import detail_of
from portal.training.models import ExclusionReason, OutdatedReason, SnapshotState
from portal.training.overview import category_titles_in, count_read_of, purpose_name


def exclusion_sentence(reason: str, count: int) -> str:
    """Say how many records were left out of a dataset, and why, as a full sentence."""
    shown = format_number(count)
    # i18n: %(count)s is a number of records (with thousands separators); the rest says why
    # they were not put into a training dataset.
    sentences = {
        ExclusionReason.NO_CONSENT: ngettext(
            "%(count)s record left out: you had not given your consent, or had withdrawn it, "
            "when the dataset was made.",
            "%(count)s records left out: you had not given your consent, or had withdrawn it, "
            "when the dataset was made.",
            count, count=shown),
        ExclusionReason.OBJECTION: ngettext(
            "%(count)s record left out: you objected to this use, and your objection is "
            "pending or was upheld.",
            "%(count)s records left out: you objected to this use, and your objection is "
            "pending or was upheld.",
            count, count=shown),
        ExclusionReason.DELETION_REQUEST: ngettext(
            "%(count)s record left out: you asked for it to be deleted.",
            "%(count)s records left out: you asked for them to be deleted.",
            count, count=shown),
        ExclusionReason.PAST_RETENTION: ngettext(
            "%(count)s record left out: it was older than this category may be kept.",
            "%(count)s records left out: they were older than this category may be kept.",
            count, count=shown),
        ExclusionReason.ABOVE_MAX_DSS: ngettext(
            "%(count)s record left out: it was more sensitive than this dataset allows.",
            "%(count)s records left out: they were more sensitive than this dataset allows.",
            count, count=shown),
        ExclusionReason.SENSITIVE_DOCUMENT: ngettext(
            "%(count)s record left out: made while a confidential or strictly confidential "
            "document (DSS level 3 or 4) was open.",
            "%(count)s records left out: made while a confidential or strictly confidential "
            "document (DSS level 3 or 4) was open.",
            count, count=shown),
        ExclusionReason.RATINGS_MISSING: ngettext(
            "%(count)s record left out: your documents' sensitivity ratings are missing, so "
            "nothing shows which records are safe to use.",
            "%(count)s records left out: your documents' sensitivity ratings are missing, so "
            "nothing shows which records are safe to use.",
            count, count=shown),
        ExclusionReason.RATINGS_OBJECTED: ngettext(
            "%(count)s record left out: you objected to your documents' sensitivity ratings, "
            "so nothing shows which records are safe to use.",
            "%(count)s records left out: you objected to your documents' sensitivity ratings, "
            "so nothing shows which records are safe to use.",
            count, count=shown),
        ExclusionReason.COLLEAGUE_NOT_CONSENTED: ngettext(
            "%(count)s message left out: written by a colleague who has not agreed to their "
            "conversations being used.",
            "%(count)s messages left out: written by colleagues who have not agreed to their "
            "conversations being used.",
            count, count=shown),
    }
    known = sentences.get(reason)  # type: ignore[call-overload]
    if known is not None:
        return str(known)
    # A reason added later without wording still reads as a sentence.
    return ngettext("%(count)s record left out (%(reason)s).",
                    "%(count)s records left out (%(reason)s).", count, count=shown,
                    reason=reason)


def reason_label(reason: str) -> str:
    """Name a reason for leaving records out, briefly (the administrator's counts)."""
    labels = {
        # i18n: why records were left out of a training dataset, before a count
        ExclusionReason.NO_CONSENT: _("No consent given, or consent withdrawn"),
        ExclusionReason.OBJECTION: _("Objection pending or upheld"),
        ExclusionReason.DELETION_REQUEST: _("Deletion request pending or approved"),
        ExclusionReason.PAST_RETENTION: _("Past the retention period"),
        ExclusionReason.ABOVE_MAX_DSS: _("Above the dataset's DSS level"),
        ExclusionReason.SENSITIVE_DOCUMENT: _("Made while a DSS 3 or 4 document was open"),
        ExclusionReason.RATINGS_MISSING: _("Sensitivity ratings missing"),
        ExclusionReason.RATINGS_OBJECTED: _("Sensitivity ratings objected to"),
        ExclusionReason.COLLEAGUE_NOT_CONSENTED: _("Messages by colleagues without consent"),
    }
    return str(labels.get(reason, reason))  # type: ignore[call-overload]


def included_sentence(count: int) -> str:
    """Say how many of the person's records a dataset holds."""
    if count == 0:
        return _("None of your records were used.")
    return ngettext("%(count)s of your records was used.", "%(count)s of your records were used.",
                    count, count=format_number(count))


def state_label(state: str) -> str:
    """Name a dataset's state as people read it ("outdated" beside the stored states)."""
    labels = {
        # i18n: the state of a training dataset, shown as a tag
        SnapshotState.QUEUED: _("Waiting to be built"),
        SnapshotState.BUILDING: _("Being built"),
        SnapshotState.READY: _("Ready"),
        SnapshotState.FAILED: _("Failed, nothing kept"),
        SnapshotState.RETIRED: _("Retired: deleted"),
        "outdated": _("Marked outdated"),
    }
    return str(labels.get(state, state))  # type: ignore[call-overload]


def state_explanation(state: str) -> str:
    """Say in a sentence what a dataset's state means for the person's records."""
    explanations = {
        SnapshotState.READY: _("The training team can read this dataset."),
        SnapshotState.RETIRED: _("Its files and its key were destroyed: no one can read it "
                                 "any more."),
        "outdated": _("It holds records that may no longer be used. The training team was "
                      "told and must not use it for new training."),
        SnapshotState.FAILED: _("It could not be built; nothing of it was kept."),
    }
    return str(explanations.get(state, ""))  # type: ignore[call-overload]


def state_tag(state: str) -> str:
    """Return the CSS class of a state's tag (the words carry the meaning, colour helps)."""
    if state == SnapshotState.READY:
        return "tag-given"
    if state in {"outdated", SnapshotState.FAILED}:
        return "tag-attention"
    return "tag-not-given"


def outdated_sentence(reason: str | None) -> str:
    """Say why the person's records in a dataset were marked outdated."""
    sentences = {
        OutdatedReason.WITHDRAWN: _("The records used here are outdated: you withdrew your "
                                    "consent."),
        OutdatedReason.OBJECTED: _("The records used here are outdated: you objected."),
        OutdatedReason.ERASED: _("The records used here are outdated: your data was erased."),
        OutdatedReason.EXPIRED: _("The records used here are outdated: your consent ended "
                                  "when the notice changed."),
    }
    return str(sentences.get(reason, _("The records used here are outdated.")))  # type: ignore[call-overload]


def category_records(count: int, category: str) -> str:
    """Name a number of the person's records of one category ("1,234 of your records in X")."""
    return ngettext("%(count)s of your records in “%(category)s”",
                    "%(count)s of your records in “%(category)s”", count,
                    count=format_number(count), category=category)


def snapshot_read_sentence(number: int, purpose: str, counts: list[str]) -> str:
    """Word a dataset's read for one person's access log, with their own counts."""
    return _("Training dataset %(number)s for the purpose “%(purpose)s” read %(records)s.",
             number=number, purpose=purpose, records=", ".join(counts))


def describe_snapshot_read(entry: AuditEntry, person_id: int, language: str) -> str | None:
    """Word a "training.snapshot" audit entry for one reader, with their own counts.

    None (the fixed label is shown) when the entry names no dataset, or the dataset holds
    nothing of this reader.
    """
    detail = detail_of(entry)
    number = detail.get("snapshot")
    if not isinstance(number, int):
        return None
    counts = count_read_of(person_id, number)
    if not counts:
        return None
    with force_locale(language):
        titles = category_titles_in(language)
        return snapshot_read_sentence(
            number, purpose_name(str(detail.get("purpose", "")), language),
            [category_records(count, titles.get(key, key)) for key, count in counts.items()])
