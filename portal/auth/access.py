"""Who may do what: the one place where views ask for roles and fresh sign-ins."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import abort, redirect, request, session, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.auth.models import Role
from portal.db import utcnow

P = ParamSpec("P")
R = TypeVar("R")


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


def signed_in_within(max_age: dt.timedelta) -> bool:
    """Say whether the person proved who they are at the provider within ``max_age``."""
    authenticated_at = getattr(session, "authenticated_at", None)
    return authenticated_at is not None and utcnow() - authenticated_at <= max_age


def fresh_sign_in_redirect(max_age: dt.timedelta) -> Response:
    """Return the redirect that makes the provider check the person again."""
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?"),
                            max_age=int(max_age.total_seconds())))
