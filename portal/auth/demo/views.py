"""The demo identity provider's endpoints: discovery, keys, sign-in, token, userinfo, logout."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error
from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from portal.auth.access import describe_roles
from portal.auth.demo.forms import DemoSignInForm, DemoSignOutForm
from portal.auth.demo.provider import PATHS, describe_provider, issuer, provider
from portal.auth.demo.service import DemoPerson, portal_roles, public_key_set
from portal.security import csrf

bp = Blueprint("demo_idp", __name__, url_prefix="/demo-idp")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonChoice:
    """A demo person as the sign-in page shows them."""

    person: DemoPerson
    roles: str


def _choices() -> list[PersonChoice]:
    config = current_app.config
    choices = []
    for person in provider().people.values():
        roles = portal_roles(person, roles_claim=config["OIDC_ROLES_CLAIM"],
                             role_map=config["ROLE_MAP"])
        choices.append(PersonChoice(person, describe_roles(roles)))
    return choices


def _refuse(error: OAuth2Error) -> Response:
    """Answer an invalid authorization request the way OAuth 2.0 says to.

    With a verified redirect URI the error goes back to the client; without one (unknown
    client, foreign redirect URI) it must not, so the browser gets a page instead.
    """
    if error.redirect_uri:
        response: Response = provider().server.handle_error_response(None, error)
        return response
    log.warning("demo identity provider refused a request: %s: %s", error.error,
                error.description)
    abort(400, description=_(
        "The demo sign-in service cannot accept this sign-in request (%(reason)s). If you "
        "opened the portal at another address than its configured base URL, open it at "
        "%(base_url)s instead.", reason=error.description or error.error,
        base_url=current_app.config["BASE_URL"]))


@bp.get(PATHS["discovery"])
def discovery() -> Response:
    """Publish the OpenID Provider Metadata."""
    return jsonify(describe_provider(issuer(current_app)))


@bp.get(PATHS["jwks"])
def jwks() -> Response:
    """Publish the public key that ID tokens are signed with."""
    return jsonify(public_key_set(provider().signing_key))


@bp.route(PATHS["authorize"], methods=["GET", "POST"])
def authorize() -> Response | str:
    """Show the demo people (GET); sign the chosen one in and send the code back (POST)."""
    server = provider().server
    if request.method == "GET":
        try:
            # The demo remembers no sign-in: every request, prompt=login and max_age=0
            # included, shows the page again, and auth_time is the moment of the choice.
            server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return _refuse(error)
        query = request.query_string.decode("latin-1")
        prompts = request.args.get("prompt", "").split()
        return render_template(
            "auth/demo_login.html", choices=_choices(),
            action=url_for(".authorize") + (f"?{query}" if query else ""),
            again="login" in prompts or "max_age" in request.args)
    form = DemoSignInForm()
    person = provider().people.get(form.sub.data or "")
    if not form.validate_on_submit() or person is None:
        abort(400, description=_("Please choose one of the demo people."))
    try:
        grant = server.get_consent_grant(end_user=person)
    except OAuth2Error as error:
        return _refuse(error)
    response: Response = server.create_authorization_response(grant=grant, grant_user=person)
    return response


@bp.post(PATHS["token"])
@csrf.exempt  # Called server to server with the client's credentials, never by a browser.
def token() -> Response:
    """Exchange an authorization code (with its PKCE verifier) for tokens."""
    response: Response = provider().server.create_token_response()
    return response


@bp.get(PATHS["userinfo"])
def userinfo() -> Response:
    """Return the claims about the holder of a bearer access token."""
    response: Response = provider().server.create_endpoint_response("userinfo")
    return response


@bp.route(PATHS["end_session"], methods=["GET", "POST"])
def end_session() -> Response | str:
    """End the sign-in at the demo provider and return to the portal (RP-initiated logout)."""
    server = provider().server
    try:
        logout = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        log.warning("demo identity provider refused a logout: %s", error.description)
        abort(400, description=_("The demo sign-in service could not check this sign-out "
                                 "request. Nothing was changed."))
    form = DemoSignOutForm()
    if logout.needs_confirmation:
        # Without a valid id_token_hint anyone could link here: ask before acting.
        if request.method == "GET":
            return render_template("auth/demo_logout.html", form=form, signed_out=False)
        if not form.validate_on_submit():
            abort(400, description=_("The sign-out form expired. Please try again."))
    response: Response | None = server.create_endpoint_response("end_session", logout)
    return response or render_template("auth/demo_logout.html", form=form, signed_out=True)
