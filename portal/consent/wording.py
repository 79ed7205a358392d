"""How consent states and methods are put into words, on pages and in printed receipts."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_babel.speaklater import LazyString

from portal.consent.models import ActorRole, ConsentMethod, ConsentState

# The CSS tag for each state: the colour repeats the word, never replaces it.
STATE_TAGS = {
    ConsentState.GIVEN: "tag-given",
    ConsentState.RENEWED: "tag-given",
    ConsentState.WITHDRAWN: "tag-withdrawn",
    ConsentState.REFUSED: "tag-not-given",
    ConsentState.EXPIRED: "tag-attention",
}


def state_label(state: ConsentState | None) -> str:
    """Name a state in a word or two (``None``: never decided, which is "not given")."""
    labels = {
        # i18n: consent state of a category
        None: pgettext("consent state", "Not given"),
        ConsentState.GIVEN: pgettext("consent state", "Given"),
        # i18n: consent given again after the notice changed in a way that matters
        ConsentState.RENEWED: pgettext("consent state", "Given again"),
        ConsentState.WITHDRAWN: pgettext("consent state", "Withdrawn"),
        ConsentState.REFUSED: pgettext("consent state", "Declined"),
        # i18n: consent ended because the notice changed; nothing is recorded until the
        # person decides again
        ConsentState.EXPIRED: pgettext("consent state", "Paused: notice changed"),
    }
    return labels[state]


def state_tag(state: ConsentState | None) -> str:
    """Return the CSS class of a state's tag."""
    return STATE_TAGS.get(state, "tag-not-given") if state else "tag-not-given"


METHOD_LABELS: dict[tuple[ConsentMethod, ActorRole], LazyString] = {
    (ConsentMethod.WEB, ActorRole.SUBJECT): _l("By you, on this portal"),
    (ConsentMethod.API, ActorRole.SUBJECT): _l("By you, through an app"),
    (ConsentMethod.WEB, ActorRole.ADMIN): _l("By the privacy team, on your behalf"),
    (ConsentMethod.WEB, ActorRole.DPO): _l("By the data protection officer, on your behalf"),
}


def method_label(method: ConsentMethod, actor_role: ActorRole) -> str:
    """Say how and by whom a change was made."""
    label = METHOD_LABELS.get((method, actor_role))
    if label is not None:
        return str(label)
    if method is ConsentMethod.IMPORT:
        return str(_l("Imported from an earlier record"))
    if method is ConsentMethod.SYSTEM:
        return str(_l("Automatically, because the notice changed"))
    return str(_l("By the privacy team, on your behalf"))
