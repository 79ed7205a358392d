"""Who may do what: the one place where views ask for roles and fresh sign-ins."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from flask import abort, current_app, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.auth.models import Role
from portal.db import utcnow

P = ParamSpec("P")
R = TypeVar("R")

ROLE_NAMES = {
    Role.HR: _l("HR"),
    Role.DPO: _l("Data protection officer"),
    Role.ADMIN: _l("Privacy administrator"),
}


def describe_roles(roles: Iterable[str]) -> str:
    """Name someone's roles in the page's language; everyone is an employee."""
    return ", ".join([_("Employee")] + [str(ROLE_NAMES[Role(role)]) for role in roles])


def role_required(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let a view run only for signed-in people holding one of ``roles``; others get 403."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        @login_required
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            if not any(current_user.has_role(role) for role in roles):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator



def fresh_sign_in_age() -> dt.timedelta:
    """Return how recent the last sign-in at the provider must be for a sensitive step."""
    return dt.timedelta(minutes=current_app.config["FRESH_SIGN_IN_MINUTES"])


def signed_in_within(max_age: dt.timedelta) -> bool:
    """Say whether the person proved who they are at the provider within ``max_age``."""
    authenticated_at = getattr(session, "authenticated_at", None)
    return authenticated_at is not None and utcnow() - authenticated_at <= max_age


def fresh_sign_in_redirect(next_path: str | None = None) -> Response:
    """Return the redirect that makes the provider check the person again (OIDC max_age).

    ``next_path`` is where to come back to (default: this page); after a POST, pass the
    page that shows the form again, since a browser cannot repeat a POST after a redirect.
    """
    target = next_path or request.full_path.rstrip("?")
    return redirect(url_for("auth.login", next=target,
                            max_age=int(fresh_sign_in_age().total_seconds())))


def fresh_sign_in_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Let a GET view run only after a sign-in at the provider within the configured age."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if not signed_in_within(fresh_sign_in_age()):
            return fresh_sign_in_redirect()
        return view(*args, **kwargs)

    return wrapped
