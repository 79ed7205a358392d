"""Webhook addresses that cannot reach inside: no loopback, private or otherwise internal hosts.

A collector's webhook URL is typed by a privacy admin and then called by the portal itself,
from inside the company network. Left unchecked, it is a way to make the portal post to
``http://127.0.0.1:5432/``, a cloud metadata service at ``169.254.169.254`` or any intranet
host (server-side request forgery). So an address is checked when it is registered (early,
with a clear message) and again right before every delivery, because what a name resolves to
may change between the two. Delivery also checks the address the socket actually connected
to, so a name that resolves differently a second time (DNS rebinding) is caught as well.

Plain ``http`` and internal addresses are allowed only with ``WEBHOOK_ALLOW_PRIVATE_NETWORKS``
(for a collector on the same host in development, and for the tests' local receivers).
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app
from flask_babel import gettext as _
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from wtforms.validators import ValidationError

MAX_LENGTH = 2048
#: The characters RFC 3986 allows in a URL; anything else (spaces, quotes, angle brackets,
#: line breaks) has no business in an address and only helps to smuggle markup or headers.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_REFUSED_KINDS = ("loopback, private, link-local, multicast, reserved and unspecified "
                  "addresses are refused")


class Refusal(enum.StrEnum):
    """Why an address may not receive notices."""

    SCHEME = "scheme"
    HOST = "host"
    INTERNAL = "internal"
    UNRESOLVED = "unresolved"


class WebhookURLRefused(ValueError):
    """The portal will not call this address; ``refusal`` says why, the message in English."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


def private_networks_allowed() -> bool:
    """Return whether this portal may call internal addresses and plain http (setting)."""
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False))


def is_internal(address: IPAddress) -> bool:
    """Return whether ``address`` is anything but a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1.
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_private or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified
            or not address.is_global)


def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # The scope of a link-local IPv6 address ("fe80::1%eth0") is not part of the address.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_webhook_url(url: str, *, unresolved_ok: bool = False,
                      allow_private: bool | None = None) -> None:
    """Refuse ``url`` unless it is an https URL of a host with public addresses only.

    The messages complete a sentence about the URL ("the webhook URL …").

    :param unresolved_ok: accept a name that does not resolve now (at registration: the
        collector may not be deployed yet; delivery checks again).
    :param allow_private: defaults to the ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` setting.
    :raise WebhookURLRefused: with the reason.
    """
    if allow_private is None:
        allow_private = private_networks_allowed()
    schemes = {"https", "http"} if allow_private else {"https"}
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise WebhookURLRefused(Refusal.HOST, "is not a valid URL") from None
    if parts.scheme not in schemes:
        raise WebhookURLRefused(Refusal.SCHEME, "must be an https:// URL" if not allow_private
                                else "must be an http:// or https:// URL")
    if not host or len(url) > MAX_LENGTH or parts.username is not None \
            or not _URL_CHARACTERS.fullmatch(url):
        raise WebhookURLRefused(Refusal.HOST, f"must be a URL of at most {MAX_LENGTH} "
                                "characters with a host name, no user name, and only the "
                                "characters URLs allow (no spaces, quotes or angle brackets)")
    if allow_private:
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = _resolve(host, port or (443 if parts.scheme == "https" else 80))
        except (OSError, UnicodeError):
            if unresolved_ok:
                return
            raise WebhookURLRefused(Refusal.UNRESOLVED,
                                    f"names a host that does not resolve ({host})") from None
    internal = sorted({str(address) for address in addresses if is_internal(address)})
    if internal:
        raise WebhookURLRefused(Refusal.INTERNAL, f"reaches an internal address ({host}: "
                                f"{', '.join(internal)}); {_REFUSED_KINDS}")


def webhook_url_refusal(url: str) -> str | None:
    """Return why an address may not be registered (in English, for the command line), or None.

    As at delivery, except that a name that does not resolve yet is accepted.
    """
    try:
        check_webhook_url(url, unresolved_ok=True)
    except WebhookURLRefused as exc:
        return str(exc)
    return None


class WebhookAddress:
    """A form validator: the address is one the portal will call (see the module)."""

    def __call__(self, form: Any, field: Any) -> None:
        """Raise a validation error worded for the privacy admin."""
        if not field.data or field.errors:  # one message per mistake
            return
        try:
            check_webhook_url(field.data.strip(), unresolved_ok=True)
        except WebhookURLRefused as exc:
            if exc.refusal is Refusal.SCHEME:
                message = _("Enter an address that starts with https://.")
            elif exc.refusal is Refusal.INTERNAL:
                message = _("Enter a public address: %(host)s is inside the company network "
                            "(a loopback, private, link-local, multicast or reserved "
                            "address), and the portal does not send notices there.",
                            host=urlsplit(field.data.strip()).hostname)
            else:
                message = _("Enter a plain web address: a host name, no user name, and no "
                            "spaces, quotes or angle brackets.")
            raise ValidationError(message) from None


# --- delivery: check the address actually connected to -----------------------------------------

class _PeerCheck:
    """Refuse a connection whose peer turned out internal (the name resolved differently)."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%", 1)[0])
        if is_internal(peer):
            sock.close()
            raise WebhookURLRefused(Refusal.INTERNAL, f"reaches an internal address (the "
                                    f"connection went to {peer}); {_REFUSED_KINDS}")
        return sock


class _CheckedHTTPConnection(_PeerCheck, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_PeerCheck, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool,
                                                   "https": _CheckedHTTPSPool}


def post_checked(url: str, **kwargs: Any) -> requests.Response:
    """POST to a webhook after checking its address again, and the address connected to.

    No proxy from the environment is used: the check is about where the request goes.

    :raise WebhookURLRefused: the address is refused; nothing was sent.
    """
    allow_private = private_networks_allowed()
    check_webhook_url(url, allow_private=allow_private)
    with requests.Session() as session:
        session.trust_env = False
        if not allow_private:
            session.mount("http://", _CheckedAdapter())
            session.mount("https://", _CheckedAdapter())
        return session.post(url, **kwargs)
