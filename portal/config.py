"""Layered, validated configuration: defaults, instance file, PORTAL_* environment, test override.

Every setting is declared once in :class:`Settings`. A mistake (an unknown key, a short secret,
a malformed role map) stops the portal at start with a message naming the setting, because a
misconfigured consent portal that starts anyway is worse than one that does not start.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "PORTAL_"
INSTANCE_FILE = "portal.toml"
ROLES = ("hr", "dpo", "admin")
# Settings whose values must never appear in an error message or a log line.
SECRET_SETTINGS = frozenset({"SECRET_KEY", "OIDC_CLIENT_SECRET", "MASTER_KEY", "METRICS_TOKEN"})


class ConfigError(Exception):
    """The configuration is wrong; the message says which setting and how to fix it."""


class Settings(BaseModel):
    """Every setting of the portal, with its default.

    In the instance file the keys are written as here (``DATABASE_URL = "..."``); in the
    environment with the prefix (``PORTAL_DATABASE_URL``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    DATABASE_URL: str = ""
    SECRET_KEY: str = ""
    DEMO: bool = False
    # 32 random bytes, base64: wraps every data key of the vault (envelope encryption).
    # Generate one: python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'
    MASTER_KEY: str = ""
    # Where the portal is reached, used to build absolute URLs outside a request (mail, CLI).
    BASE_URL: str = "http://127.0.0.1:5000"

    # The receipt signing key (a private JWK, P-256). Empty: made on first use in the instance
    # folder. With several hosts, point every one at the same key file.
    RECEIPT_KEY_FILE: str = ""
    # After a rotation of that key: a JWK Set file with the earlier public keys (a saved
    # /.well-known/jwks.json), published beside the current key so older receipts still verify.
    RECEIPT_RETIRED_KEYS_FILE: str = ""

    OIDC_ISSUER: str = ""
    OIDC_CLIENT_ID: str = ""
    OIDC_CLIENT_SECRET: str = ""
    OIDC_SCOPES: str = "openid profile email"
    OIDC_ROLES_CLAIM: str = "groups"
    # Only these signature algorithms are accepted on ID tokens; never "none".
    OIDC_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")

    ROLE_MAP: dict[Literal["hr", "dpo", "admin"], list[str]] = Field(default_factory=dict)

    DEFAULT_LOCALE: Literal["en", "de", "fr"] = "en"
    DEFAULT_TIMEZONE: str = "UTC"

    # A session dies after this long without a request, and in any case after the absolute limit.
    SESSION_IDLE_MINUTES: int = Field(default=30, ge=1, le=24 * 60)
    SESSION_ABSOLUTE_HOURS: int = Field(default=12, ge=1, le=7 * 24)

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line, for a log collector; "text": lines for a person at a
    # terminal. Empty: text in demo mode, JSON otherwise.
    LOG_FORMAT: Literal["", "json", "text"] = ""
    # The bearer token that a Prometheus scraper presents at /metrics. Empty: no /metrics (404).
    METRICS_TOKEN: str = ""
    # How many reverse proxies stand in front of the portal. 0: X-Forwarded-* headers are
    # ignored (anyone could send them); n: the scheme and client address are taken from the
    # n-th proxy's X-Forwarded-Proto and X-Forwarded-For (werkzeug's ProxyFix).
    TRUSTED_PROXIES: int = Field(default=0, ge=0, le=5)
    # The shred journal: every destroyed data key is appended here (a file path on storage
    # that a database restore does not roll back), so that `portal vault replay-shreds`
    # can destroy again the keys that a restored backup brings back. Empty: no journal.
    SHRED_JOURNAL: str = ""
    # Where training snapshots' files are kept (encrypted, one folder per snapshot): an absolute
    # path, shared by every worker and web process. Empty: "training" in the instance folder.
    TRAINING_STORAGE_DIR: str = ""

    # Where rate-limit counters live: memory:// (per process) or redis://host:6379/0 (shared).
    RATELIMIT_STORAGE_URL: str = "memory://"
    SIGN_IN_RATE_LIMIT: str = "30 per minute"
    # Per collector token.
    API_RATE_LIMIT: str = "600 per minute"
    # The largest batch body accepted, after gzip decompression.
    API_MAX_BODY_BYTES: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # Per person: downloads of one's own data, and HR's consent-record exports.
    DOWNLOAD_RATE_LIMIT: str = "10 per hour"
    EXPORT_RATE_LIMIT: str = "30 per hour"

    # Downloading one's data and executing a deletion ask the identity provider to check the
    # person again (OIDC max_age) when their last sign-in there is older than this.
    FRESH_SIGN_IN_MINUTES: int = Field(default=15, ge=1, le=24 * 60)

    # Mail to employees and the DPO team. Empty SMTP_HOST: nothing is sent (each message is
    # kept as undelivered, and the pages still show every step).
    SMTP_HOST: str = ""
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: str = ""
    # "starttls" (port 587), "tls" (implicit TLS, port 465) or "none" (a relay on localhost).
    SMTP_SECURITY: Literal["starttls", "tls", "none"] = "starttls"
    SMTP_FROM: str = "privacy-portal@localhost"
    # The DPO team's shared mailbox, told of every new request and every step.
    DPO_TEAM_EMAIL: str = ""

    # Whether executing a deletion needs a second DPO's confirmation after the approval.
    DELETION_SECOND_DPO: bool = False

    # Whether collectors' webhooks may be plain http and on loopback, private, link-local or
    # other internal addresses. Off: only https to public addresses, checked at registration and
    # at every delivery, so a webhook cannot make the portal call inside the company network
    # (SSRF). Turn on only for a collector on the same host or network (development, tests).
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: bool = False

    # Training snapshots are built in parts of this many people (per category), which worker
    # processes (`portal training work`) take with a lease of this many seconds; a worker that
    # dies loses its part when the lease ends and another builds it again.
    TRAINING_PART_PEOPLE: int = Field(default=2000, ge=1, le=1_000_000)
    TRAINING_PART_LEASE_SECONDS: int = Field(default=300, ge=5, le=24 * 3600)

    # HR's aggregates hide any group smaller than this, so nobody's choice can be inferred.
    HR_MIN_GROUP_SIZE: int = Field(default=5, ge=2, le=1000)

    # Training snapshots older than this many days are retired (key destroyed, files removed,
    # certificate issued) by `portal training retire-expired`, run daily. 0: never.
    TRAINING_SNAPSHOT_MAX_AGE_DAYS: int = Field(default=90, ge=0, le=3650)

    @field_validator("SECRET_KEY")
    @classmethod
    def _secret_key_is_long(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters; generate one with "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
        return value

    @field_validator("MASTER_KEY")
    @classmethod
    def _is_32_bytes_base64(cls, value: str) -> str:
        if not value:
            return value
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 (32 random bytes)") from None
        if len(raw) != 32:
            raise ValueError(f"must decode to 32 bytes, not {len(raw)}")
        return value

    @field_validator("METRICS_TOKEN")
    @classmethod
    def _metrics_token_is_long(cls, value: str) -> str:
        if value and (len(value) < 32 or not value.isascii() or any(
                char.isspace() for char in value)):
            raise ValueError("must be at least 32 printable ASCII characters without spaces; "
                             "generate one with "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value

    @field_validator("RECEIPT_RETIRED_KEYS_FILE")
    @classmethod
    def _is_a_file(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("TRAINING_STORAGE_DIR")
    @classmethod
    def _is_an_absolute_folder(cls, value: str) -> str:
        # Relative to what? Each process has its own working directory.
        if value and not Path(value).is_absolute():
            raise ValueError("must be an absolute path")
        if value and Path(value).exists() and not Path(value).is_dir():
            raise ValueError(f"is not a folder: {value}")
        return value

    @field_validator("OIDC_ISSUER", "BASE_URL")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("SIGN_IN_RATE_LIMIT", "API_RATE_LIMIT", "DOWNLOAD_RATE_LIMIT",
                     "EXPORT_RATE_LIMIT")
    @classmethod
    def _is_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("must be a limit such as '30 per minute' or '5/second'") from None
        return value

    @field_validator("SMTP_FROM", "DPO_TEAM_EMAIL")
    @classmethod
    def _is_mail_address(cls, value: str) -> str:
        if value and ("@" not in value or any(char in value for char in "\r\n<>,; ")):
            raise ValueError("must be one e-mail address, such as privacy@example.com")
        return value

    @field_validator("OIDC_SCOPES")
    @classmethod
    def _asks_for_openid(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError("must include the scope 'openid'")
        return value

    @field_validator("OIDC_ALGORITHMS")
    @classmethod
    def _never_none(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(alg.lower() == "none" for alg in value):
            raise ValueError("must list signature algorithms and may not contain 'none'")
        return value

    @field_validator("OIDC_ROLES_CLAIM")
    @classmethod
    def _is_dotted_path(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            raise ValueError("must be a dotted path into the claims, such as 'groups' or "
                             "'realm_access.roles'")
        return value

    @model_validator(mode="after")
    def _complete_for_sign_in(self) -> Settings:
        if self.DEMO:
            if self.OIDC_ISSUER:
                # Demo mode brings its own identity provider; mixing it with a company's
                # provider would make demo people look real. Refuse rather than guess.
                raise ValueError("PORTAL_DEMO is on and PORTAL_OIDC_ISSUER is set: demo mode "
                                 "uses its own identity provider; turn one of them off")
            return self
        missing = [name for name in ("SECRET_KEY", "MASTER_KEY", "OIDC_ISSUER", "OIDC_CLIENT_ID",
                                     "OIDC_CLIENT_SECRET") if not getattr(self, name)]
        if missing:
            raise ValueError("missing " + ", ".join(ENV_PREFIX + name for name in missing)
                             + " (or set PORTAL_DEMO=1 for the demo)")
        return self


def _parse_env_value(name: str, raw: str) -> Any:
    """Turn an environment string into the type the setting expects."""
    annotation = Settings.model_fields[name].annotation
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{ENV_PREFIX}{name}: expected 1/0, true/false, yes/no or on/off")
    if name == "ROLE_MAP":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV_PREFIX}ROLE_MAP: not valid JSON ({exc.msg} at character "
                              f"{exc.pos}); expected e.g. "
                              '{"hr": ["people-ops"], "dpo": ["privacy-office"]}') from None
    if name == "OIDC_ALGORITHMS":
        return tuple(part for part in raw.replace(",", " ").split() if part)
    return raw


def _unknown(keys: set[str], source: str, prefix: str = "") -> None:
    unknown = sorted(keys - set(Settings.model_fields))
    if not unknown:
        return
    lines = []
    for key in unknown:
        close = difflib.get_close_matches(key, Settings.model_fields, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        lines.append(f"unknown setting {prefix}{key} in {source}{hint}")
    raise ConfigError("; ".join(lines))


def read_instance_file(instance_path: Path) -> dict[str, Any]:
    """Read ``portal.toml`` from the instance folder, if there is one."""
    path = instance_path / INSTANCE_FILE
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _unknown(set(values), str(path))
    return values


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect ``PORTAL_*`` variables, refusing unknown ones (a typo must not pass silently)."""
    names = {key[len(ENV_PREFIX):] for key in environ if key.startswith(ENV_PREFIX)}
    _unknown(names, "the environment", ENV_PREFIX)
    return {name: _parse_env_value(name, environ[ENV_PREFIX + name]) for name in names}


def _demo_secret(instance_path: Path, name: str, make: Callable[[], str]) -> str:
    """Return one of the demo's own secrets, made once and kept in the instance folder."""
    path = instance_path / name
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        # Created with its final mode, so the secret is never readable by others.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


def load_settings(
    instance_path: Path,
    environ: Mapping[str, str] | None = None,
    override: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from every layer, later layers winning, and validate them."""
    values: dict[str, Any] = {}
    values.update(read_instance_file(instance_path))
    values.update(read_environment(os.environ if environ is None else environ))
    if override:
        _unknown(set(override), "the test override")
        values.update(override)
    if not values.get("DATABASE_URL"):
        values["DATABASE_URL"] = f"sqlite:///{instance_path / 'portal.sqlite3'}"
    if values.get("DEMO") is True:
        if not values.get("SECRET_KEY"):
            values["SECRET_KEY"] = _demo_secret(instance_path, "demo-secret-key",
                                                lambda: secrets.token_urlsafe(48))
        if not values.get("MASTER_KEY"):
            values["MASTER_KEY"] = _demo_secret(
                instance_path, "demo-master-key",
                lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """Say what is wrong with each setting without echoing any secret value."""
    problems = []
    for error in exc.errors():
        location = error["loc"]
        name = f"{ENV_PREFIX}{location[0]}" if location else "configuration"
        if len(location) > 1:
            name += "." + ".".join(str(part) for part in location[1:])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}" if location else message)
    return "; ".join(problems)
