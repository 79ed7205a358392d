"""Sign-in, its callback and sign-out."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_user
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from portal.auth import oidc
from portal.auth.forms import SignOutForm
from portal.auth.service import (
    SignInRefused,
    authenticated_at,
    find_claim,
    merge_userinfo,
    sign_in,
)
from portal.auth.sessions import regenerate
from portal.db import utcnow
from portal.i18n import current_locale
from portal.limits import limiter, sign_in_limit

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger(__name__)

# Claims we want; when the ID token lacks any of them we ask the userinfo endpoint.
WANTED_CLAIMS = ("name", "email")
# Clock difference tolerated when checking auth_time against a requested max_age.
AUTH_TIME_LEEWAY = dt.timedelta(seconds=30)


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, else ``None`` (no open redirects)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(char) < 32 for char in target):
        return None
    return target


@bp.get("/login")
@limiter.limit(sign_in_limit)
def login() -> Response:
    """Send the browser to the identity provider."""
    session["sign_in_next"] = safe_next(request.args.get("next"))
    extra: dict[str, Any] = {}
    max_age = request.args.get("max_age", type=int)
    if max_age is not None:
        # A fresh sign-in for a sensitive step (a download, a deletion): the provider must
        # have checked the person within max_age seconds.
        extra["max_age"] = max(0, min(max_age, 86400))
        session["sign_in_max_age"] = extra["max_age"]
    else:
        session.pop("sign_in_max_age", None)
    extra["ui_locales"] = current_locale()
    try:
        return oidc.client().authorize_redirect(url_for(".callback", _external=True), **extra)
    except (oidc.ProviderMisconfigured, requests.RequestException) as exc:
        log.error("identity provider unusable: %s", exc)
        abort(503, description=_("The sign-in service cannot be reached. Please try again in "
                                 "a few minutes."))


@bp.get("/callback")
@limiter.limit(sign_in_limit)
def callback() -> Response:
    """Check the provider's answer and sign the person in."""
    client = oidc.client()
    try:
        token = client.authorize_access_token(claims_options=oidc.claims_options())
        id_claims = token.get("userinfo")
        if not id_claims:
            raise SignInRefused("the provider returned no ID token")
        claims = dict(id_claims)
        roles_claim = current_app.config["OIDC_ROLES_CLAIM"]
        lacking = (any(not claims.get(name) for name in WANTED_CLAIMS)
                   or find_claim(claims, roles_claim) is None)
        if lacking and client.load_server_metadata().get("userinfo_endpoint"):
            claims = merge_userinfo(claims, client.userinfo(token=token))
        signed_in_at = authenticated_at(claims)
        max_age = session.pop("sign_in_max_age", None)
        if max_age is not None:
            if "auth_time" not in claims:
                raise SignInRefused("a fresh sign-in was asked for but auth_time is missing")
            if utcnow() - signed_in_at > dt.timedelta(seconds=max_age) + AUTH_TIME_LEEWAY:
                raise SignInRefused("the provider did not ask for the password again")
        person = sign_in(claims, issuer=client.expected_issuer, roles_claim=roles_claim,
                         role_map=current_app.config["ROLE_MAP"])
    except (AuthlibBaseError, JoseError, SignInRefused, oidc.ProviderMisconfigured) as exc:
        # The reason goes to the log for operators; the person gets a plain message.
        log.warning("sign-in refused: %s: %s", type(exc).__name__, exc)
        abort(400, description=_("Sign-in did not succeed: the answer from the sign-in "
                                 "service could not be verified. Please start again."))
    except requests.RequestException as exc:
        log.error("identity provider unreachable during sign-in: %s", exc)
        abort(503, description=_("The sign-in service cannot be reached. Please try again in "
                                 "a few minutes."))
    next_url = session.pop("sign_in_next", None)
    locale = session.get("locale")
    session.clear()
    regenerate(session, authenticated_at=signed_in_at)
    if locale:
        session["locale"] = locale
    login_user(person)
    session["id_token"] = token.get("id_token")
    flash(_("You are signed in."), "success")
    return redirect(next_url or url_for("core.dashboard"))


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    """Ask for confirmation (GET), then end the session here and at the provider (POST)."""
    form = SignOutForm()
    if request.method == "GET":
        if not current_user.is_authenticated:
            return redirect(url_for("core.dashboard"))
        return render_template("auth/logout.html", form=form)
    if not form.validate_on_submit():
        abort(400, description=_("The sign-out form expired. Please try again."))
    id_token = session.get("id_token")
    # Emptying the server-side session deletes its row: the old cookie is dead from now on.
    session.clear()
    regenerate(session, authenticated_at=None)
    end_session = None
    try:
        end_session = oidc.client().load_server_metadata().get("end_session_endpoint")
    except (oidc.ProviderMisconfigured, requests.RequestException) as exc:
        log.warning("could not reach the provider for RP-initiated logout: %s", exc)
    flash(_("You are signed out."), "success")
    if end_session and id_token:
        query = urlencode({
            "id_token_hint": id_token,
            "client_id": oidc.client().client_id,
            "post_logout_redirect_uri": url_for("core.dashboard", _external=True),
        })
        return redirect(f"{end_session}?{query}")
    return redirect(url_for("core.dashboard"))
