"""Sign in at the test IdP with plain HTTP requests, as a browser would, without one."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

MAX_HOPS = 20


class LoginRejected(AssertionError):
    """The IdP showed its login form again: wrong username or password."""


@dataclass
class _Form:
    action: str
    inputs: dict[str, str] = field(default_factory=dict)


class _LoginPageParser(HTMLParser):
    """Collect a page's forms (action and named inputs) and its ``role="alert"`` text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.error = ""
        self._in_alert = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(action=attributes.get("action", "")))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1].inputs[attributes["name"]] = attributes.get("value", "")
        elif attributes.get("role") == "alert":
            self._in_alert = True

    def handle_endtag(self, tag: str) -> None:
        self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._in_alert:
            self.error += data.strip()

    def login_form(self) -> _Form | None:
        """Return the form with a ``password`` input, if the page has one."""
        return next((form for form in self.forms if "password" in form.inputs), None)


def login_via_form(
    session: requests.Session,
    authorize_url: str,
    username: str,
    password: str,
    *,
    stop_at: str | None = None,
    timeout: float = 10.0,
) -> str:
    """Sign in from ``authorize_url`` and return the callback URL (with code and state).

    Follows redirects by hand until one points at ``stop_at`` (default: the ``redirect_uri``
    of the authorize URL), which is returned unfollowed. If the IdP shows its login form, it
    is filled in and submitted once; an existing IdP session skips it. Raises
    :class:`LoginRejected` when the credentials are refused, ``AssertionError`` on any other
    page where a redirect or the form was expected.
    """
    if stop_at is None:
        stop_at = parse_qs(urlsplit(authorize_url).query)["redirect_uri"][0]
    response = session.get(authorize_url, allow_redirects=False, timeout=timeout)
    submitted = False
    for _ in range(MAX_HOPS):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(stop_at):
                return location
            response = session.get(location, allow_redirects=False, timeout=timeout)
            continue
        page = _LoginPageParser()
        page.feed(response.text)
        form = page.login_form()
        if form is None:
            raise AssertionError(
                f"expected a redirect or the login form at {response.url}, got HTTP "
                f"{response.status_code}:\n{response.text[:2000]}")
        if submitted:
            raise LoginRejected(page.error or f"login refused with HTTP {response.status_code}")
        fields = {**form.inputs, "username": username, "password": password}
        action = urljoin(response.url, form.action)
        response = session.post(action, data=fields, allow_redirects=False, timeout=timeout)
        submitted = True
    raise AssertionError(f"no redirect to {stop_at} after {MAX_HOPS} hops")
