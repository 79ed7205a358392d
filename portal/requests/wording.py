"""How request states, timeline steps and deadlines read to people, in their language."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_babel.speaklater import LazyString

from portal.requests.deadlines import Urgency
from portal.requests.models import EventKind


def state_label(state: str) -> str:
    """Name a request's or an objection's state."""
    labels = {
        # i18n: state of a deletion request or objection, shown as a tag
        "received": pgettext("request state", "Received"),
        "extended": pgettext("request state", "Extended"),
        "approved": pgettext("request state", "Approved"),
        "approved_in_part": pgettext("request state", "Approved in part"),
        "refused": pgettext("request state", "Refused"),
        "confirmed": pgettext("request state", "Confirmed"),
        "executing": pgettext("request state", "Being deleted"),
        "executed": pgettext("request state", "Deleted"),
        "cancelled": pgettext("request state", "Cancelled"),
        "upheld": pgettext("request state", "Upheld"),
        "dismissed": pgettext("request state", "Dismissed"),
    }
    return labels.get(state, state)


def state_tag(state: str) -> str:
    """Return the CSS class of a state's tag (the words carry the meaning, colour helps)."""
    if state in {"executed", "upheld"}:
        return "tag-given"
    if state in {"refused", "dismissed"}:
        return "tag-withdrawn"
    if state == "cancelled":
        return "tag-not-given"
    return "tag-attention"


EVENTS: dict[EventKind, LazyString] = {
    # i18n: a step in the timeline of a deletion request or objection
    EventKind.SUBMITTED: _l("Request received"),
    EventKind.CONSENT_WITHDRAWN: _l("Consent withdrawn, as you asked"),
    EventKind.EXTENDED: _l("Deadline extended"),
    EventKind.APPROVED: _l("Approved"),
    EventKind.APPROVED_IN_PART: _l("Approved in part"),
    EventKind.REFUSED: _l("Refused"),
    EventKind.CONFIRMED: _l("Confirmed by a second data protection officer"),
    EventKind.EXECUTION_STARTED: _l("Deletion started"),
    EventKind.CATEGORY_DELETED: _l("Category deleted"),
    EventKind.EXECUTED: _l("Deletion complete"),
    EventKind.VERIFIED: _l("Checked: nothing in scope remains"),
    EventKind.CANCELLED: _l("Cancelled"),
    EventKind.OBJECTION_UPHELD: _l("Objection upheld"),
    EventKind.OBJECTION_DISMISSED: _l("Objection dismissed"),
}


def event_label(kind: EventKind | str) -> str:
    """Name a step of a timeline."""
    return str(EVENTS[EventKind(kind)])


def capacity_label(capacity: str) -> str:
    """Name the capacity in which someone acted."""
    labels = {
        # i18n: who took a step of a request
        "employee": _("You"),
        "dpo": _("Data protection officer"),
        "operator": _("Server operator"),
        "system": _("The portal (automatic)"),
    }
    return labels.get(capacity, capacity)


def urgency_label(urgency: Urgency | None) -> str:
    """Say in words how close a request is to its deadline."""
    if urgency is Urgency.OVERDUE:
        # i18n: a request past its legal deadline, in the DPO's queue
        return _("Overdue")
    if urgency is Urgency.DUE_SOON:
        return _("Due within 7 days")
    if urgency is Urgency.ON_TIME:
        return _("On time")
    return ""


def urgency_tag(urgency: Urgency | None) -> str:
    """Return the CSS class of an urgency tag."""
    return {Urgency.OVERDUE: "tag-withdrawn", Urgency.DUE_SOON: "tag-attention",
            Urgency.ON_TIME: "tag-given"}.get(urgency, "") if urgency else ""


def scope_label(scope: str) -> str:
    """Name the scope of a deletion request."""
    return {"all": _("Everything collected about you"),
            "categories": _("Chosen categories"),
            "range": _("Everything collected in a period")}.get(scope, scope)
