"""Start the real OpenID Connect provider of tests/idp (panva/oidc-provider) for a test.

    with OIDCProvider(clients=[CLIENT], accounts=[ALICE]) as idp:
        app = make_app(OIDC_ISSUER=idp.issuer, ...)

The provider runs as a Node process on 127.0.0.1; its output goes to a log file, shown by
:meth:`OIDCProvider.output` and in the error raised when it fails to start.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .jose_tools import JWK, generate_rsa_jwk, public_jwk

IDP_DIR = Path(__file__).resolve().parent.parent / "idp"
STARTUP_TIMEOUT = 30.0


class ProviderError(RuntimeError):
    """The provider could not be installed or started."""


def _installed_version() -> str | None:
    manifest = IDP_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def ensure_installed() -> None:
    """Run ``npm ci`` in tests/idp unless the pinned oidc-provider is already installed."""
    pinned = json.loads((IDP_DIR / "package.json").read_text())["dependencies"]["oidc-provider"]
    if _installed_version() == pinned:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise ProviderError("npm is not installed; the test IdP needs Node.js 20+ and npm")
    # A lock, because pytest-xdist workers may all get here at once on a fresh checkout.
    lock_path = Path(tempfile.gettempdir()) / "portal-test-idp-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() == pinned:
            return
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=IDP_DIR,
            capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ProviderError(f"npm ci in {IDP_DIR} failed:\n{done.stdout}\n{done.stderr}")


class OIDCProvider:
    """Run tests/idp/server.js with the given clients and accounts, as a context manager.

    ``clients`` are oidc-provider client metadata, e.g. ``{"client_id": "portal",
    "client_secret": "s3cret", "redirect_uris": ["http://127.0.0.1:5000/auth/callback"],
    "post_logout_redirect_uris": ["http://127.0.0.1:5000/"],
    "token_endpoint_auth_method": "client_secret_basic"}``. ``accounts`` are
    ``{"sub": "alice", "password": "...", "claims": {"name": ..., "email": ..., "groups":
    [...], "department": ..., "location": ...}}``; the login form takes the sub or the email.

    With ``userinfo_only`` the ID token carries no profile/email/groups claims: they come only
    from the userinfo endpoint. ``issuer`` defaults to the provider's own origin; a
    :class:`~tests.support.tamper_proxy.TamperProxy` in front passes its origin instead.
    """

    def __init__(
        self,
        clients: list[dict[str, Any]],
        accounts: list[dict[str, Any]],
        *,
        userinfo_only: bool = False,
        issuer: str | None = None,
        claims_by_scope: dict[str, list[str]] | None = None,
        signing_jwk: JWK | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.clients = clients
        self.accounts = accounts
        self.userinfo_only = userinfo_only
        # Generated here, not in Node, so that a tamper proxy can re-sign with the same key.
        self.signing_jwk: JWK = signing_jwk or generate_rsa_jwk()
        self.startup_timeout = startup_timeout
        self._issuer = issuer
        self._claims_by_scope = claims_by_scope
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._final_output = ""
        self.origin = ""
        self.port = 0

    @property
    def issuer(self) -> str:
        """Return the issuer identifier (what the relying party configures)."""
        return self._issuer or self.origin

    @property
    def discovery_url(self) -> str:
        """Return the URL of the discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks(self) -> dict[str, list[JWK]]:
        """Return the provider's public key set (as served at its jwks_uri)."""
        return {"keys": [public_jwk(self.signing_jwk)]}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Install the provider if needed, start it and wait until it accepts connections."""
        ensure_installed()
        node = shutil.which("node")
        if node is None:
            raise ProviderError("node is not installed; the test IdP needs Node.js 20+")
        self._tmp = tempfile.TemporaryDirectory(prefix="portal-idp-")
        config_path = Path(self._tmp.name) / "config.json"
        config: dict[str, Any] = {
            "port": 0,  # server.js binds a free port and reports it: no race over ports
            "clients": self.clients,
            "accounts": self.accounts,
            "id_token_claims_in_userinfo_only": self.userinfo_only,
            "signing_jwk": self.signing_jwk,
        }
        if self._issuer:
            config["issuer"] = self._issuer
        if self._claims_by_scope:
            config["claims_by_scope"] = self._claims_by_scope
        config_path.write_text(json.dumps(config))
        self._log = Path(self._tmp.name) / "output.log"
        # One file for stdout and stderr, not pipes: nobody has to drain them while tests run.
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [node, "server.js", str(config_path)], cwd=IDP_DIR,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"})
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("READY "):
                    self.origin = line.removeprefix("READY ").strip()
                    self.port = int(self.origin.rsplit(":", 1)[1])
                    return
            if self._process.poll() is not None:
                raise ProviderError(
                    f"the test IdP exited with {self._process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise ProviderError(
            f"the test IdP was not ready after {self.startup_timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        """Return everything the Node process printed so far (rejections are logged here)."""
        if self._log is None or not self._log.exists():
            return self._final_output
        return self._log.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process (terminate, then kill) and remove its temporary files."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=5)
            self._process = None
        if self._tmp is not None:
            self._final_output = self.output()  # kept for a failing test's report
            self._tmp.cleanup()
            self._tmp = None
            self._log = None
