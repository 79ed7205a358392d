"""A reverse proxy in front of the test IdP that can forge the ID token the token endpoint returns.

    with provider_behind_proxy(clients=[CLIENT], accounts=[ALICE]) as (idp, proxy):
        app = make_app(OIDC_ISSUER=idp.issuer, ...)   # idp.issuer == proxy.origin
        proxy.mode = "alg_none"
        ...  # sign in through the portal: it must refuse the token

The relying party talks only to the proxy. The provider is started with the proxy's origin as
its issuer, and the proxy forwards the Host header unchanged, so every URL and ``iss`` the
provider produces already names the proxy; rewriting the discovery document is then a safety
net. In a tamper mode the proxy re-signs the altered ID token with the provider's own key
(``OIDCProvider.signing_jwk``), so that only the altered property can make it fail.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, get_args

from .jose_tools import JWK, generate_rsa_jwk, sign_rs256, split_jwt, unsigned_jwt
from .oidc_provider import OIDCProvider

Mode = Literal["foreign_audience", "foreign_audience_our_azp", "wrong_issuer", "bad_signature",
               "wrong_key", "alg_none"]
MODES: tuple[str, ...] = get_args(Mode)
# oidc-provider's default routes (routes.token, the discovery path).
TOKEN_PATH = "/token"
DISCOVERY_PATH = "/.well-known/openid-configuration"
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy recomputes.
_SKIPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "accept-encoding",
})


def tamper_id_token(
    token: str, mode: Mode, signing_jwk: JWK, *,
    foreign_audience: str = "intruder-client",
    wrong_issuer: str = "https://idp.attacker.invalid",
) -> str:
    """Return ``token`` altered as ``mode`` says.

    ``foreign_audience`` and ``wrong_issuer`` change one claim and re-sign with the real key;
    ``bad_signature`` changes ``name`` and keeps the original signature; ``wrong_key`` signs
    the unchanged claims with another key under the real ``kid``; ``alg_none`` sends the
    unchanged claims with ``alg: none`` and an empty signature.
    """
    header, claims, signature = split_jwt(token)
    if mode == "foreign_audience":
        return sign_rs256(header, {**claims, "aud": foreign_audience}, signing_jwk)
    if mode == "foreign_audience_our_azp":
        # Names us as the authorised party, so only an explicit audience check catches it.
        return sign_rs256(header, {**claims, "aud": [foreign_audience],
                                   "azp": claims["aud"]}, signing_jwk)
    if mode == "wrong_issuer":
        return sign_rs256(header, {**claims, "iss": wrong_issuer}, signing_jwk)
    if mode == "bad_signature":
        return unsigned_jwt(header, {**claims, "name": "Mallory"}) + signature
    if mode == "wrong_key":
        return sign_rs256(header, claims, generate_rsa_jwk(kid=header.get("kid")))
    if mode == "alg_none":
        return unsigned_jwt({"alg": "none", "typ": "JWT"}, claims)
    raise ValueError(f"unknown tamper mode {mode!r}; one of {MODES}")


class TamperProxy:
    """Forward every request to an upstream provider, forging ID tokens when ``mode`` is set.

    Binds a free 127.0.0.1 port at construction, so that :attr:`origin` can be given to the
    provider as its issuer before the provider starts; :meth:`attach` then names the upstream.
    ``id_tokens`` records ``(as issued, as sent)`` for every token response.
    """

    def __init__(self, *, foreign_audience: str = "intruder-client",
                 wrong_issuer: str = "https://idp.attacker.invalid") -> None:
        self._mode: Mode | None = None
        self.foreign_audience = foreign_audience
        self.wrong_issuer = wrong_issuer
        self.id_tokens: list[tuple[str, str]] = []
        self._upstream: OIDCProvider | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    @property
    def mode(self) -> Mode | None:
        """Return how the next ID tokens are forged; None passes them through."""
        return self._mode

    @mode.setter
    def mode(self, mode: Mode | None) -> None:
        # Checked here: a misspelt mode would otherwise make a security test pass vacuously.
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown tamper mode {mode!r}; one of {MODES}")
        self._mode = mode

    def attach(self, provider: OIDCProvider) -> None:
        """Forward to ``provider`` (started) and sign forged tokens with its key."""
        self._upstream = provider

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _rewrite(self, path: str, status: int, body: bytes) -> bytes:
        """Return the response body the relying party gets."""
        assert self._upstream is not None
        if status != 200:
            return body
        if path == DISCOVERY_PATH:
            text = body.decode().replace(self._upstream.origin, self.origin)
            return json.dumps({**json.loads(text), "issuer": self.origin}).encode()
        if path == TOKEN_PATH:
            payload: dict[str, Any] = json.loads(body)
            if "id_token" in payload:
                issued = payload["id_token"]
                if self.mode is not None:
                    payload["id_token"] = tamper_id_token(
                        issued, self.mode, self._upstream.signing_jwk,
                        foreign_audience=self.foreign_audience, wrong_issuer=self.wrong_issuer)
                self.id_tokens.append((issued, payload["id_token"]))
                return json.dumps(payload).encode()
        return body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            """Forward one request upstream and relay the (rewritten) answer."""

            def _forward(self) -> None:
                upstream = proxy._upstream
                if upstream is None:
                    self.send_error(502, "TamperProxy: no provider attached")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                # Host goes through unchanged: the provider builds its URLs from it.
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in _SKIPPED_HEADERS}
                connection = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    path = self.path.split("?", 1)[0]
                    content = proxy._rewrite(path, response.status, response.read())
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():  # keeps every Set-Cookie
                        if name.lower() not in _SKIPPED_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(content)
                finally:
                    connection.close()

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _forward

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet; pytest would show every request otherwise."""

        return Handler


@contextmanager
def provider_behind_proxy(
    clients: list[dict[str, Any]], accounts: list[dict[str, Any]], **provider_options: Any,
) -> Iterator[tuple[OIDCProvider, TamperProxy]]:
    """Start a TamperProxy and an OIDCProvider whose issuer is the proxy's origin."""
    with TamperProxy() as proxy, OIDCProvider(
            clients, accounts, issuer=proxy.origin, **provider_options) as provider:
        proxy.attach(provider)
        yield provider, proxy
