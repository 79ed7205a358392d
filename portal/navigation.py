"""The main navigation: each entry names its endpoint and the role it needs.

An entry appears only once its feature is installed (its endpoint exists) and only for people
holding its role, so navigation can never advertise a page someone may not open.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, request, url_for
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from flask_login import current_user

from portal.auth.access import describe_roles
from portal.auth.models import Person, Role


@dataclass(frozen=True)
class Entry:
    """One link of the main navigation."""

    endpoint: str
    label: LazyString
    #: Shown to people holding any of these roles; empty: to everyone signed in.
    roles: tuple[Role, ...] = ()


ENTRIES = (
    Entry("core.dashboard", _l("Overview")),
    Entry("catalog.index", _l("What is recorded")),
    Entry("consent.history", _l("Consent history")),
    Entry("exports.my_data", _l("My data")),
    Entry("requests.index", _l("My requests")),
    Entry("audit.access_log", _l("Who accessed my data")),
    # The same roles as the views' role_required: a link never leads to a 403.
    Entry("hr.index", _l("Consent records"), (Role.HR, Role.DPO)),
    Entry("dpo.queue", _l("Request queue"), (Role.DPO,)),
    Entry("admin.index", _l("Administration"), (Role.ADMIN,)),
    Entry("collectors.index", _l("Collectors"), (Role.ADMIN,)),
)


@dataclass(frozen=True)
class Link:
    """An entry resolved for this request."""

    url: str
    label: str
    current: bool


def navigation() -> list[Link]:
    """Return the links the current person may follow."""
    links = []
    for entry in ENTRIES:
        if entry.endpoint not in current_app.view_functions:
            continue
        if entry.roles and not any(current_user.has_role(role) for role in entry.roles):
            continue
        links.append(Link(url_for(entry.endpoint), str(entry.label),
                          request.endpoint == entry.endpoint))
    return links


def role_names(person: Person) -> str:
    """Name the person's roles in their language; everyone is an employee."""
    return describe_roles(person.roles)


def init_app(app: Flask) -> None:
    """Make the navigation available to templates."""
    app.jinja_env.globals.update(navigation=navigation, role_names=role_names)
