"""Configuration: layering, and a clear message for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.config import ConfigError, load_settings

GOOD = {
    "PORTAL_SECRET_KEY": "s" * 40,
    "PORTAL_MASTER_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "PORTAL_OIDC_ISSUER": "https://login.example.com/realms/staff",
    "PORTAL_OIDC_CLIENT_ID": "consent-portal",
    "PORTAL_OIDC_CLIENT_SECRET": "client-secret-value",
}


def test_defaults_to_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, GOOD)
    assert f"sqlite:///{tmp_path / 'portal.sqlite3'}" == settings.DATABASE_URL
    assert settings.OIDC_ISSUER == "https://login.example.com/realms/staff"


def test_layers_file_then_environment_then_override(tmp_path: Path) -> None:
    (tmp_path / "portal.toml").write_text(
        'DATABASE_URL = "postgresql://file/db"\nOIDC_ROLES_CLAIM = "realm_access.roles"\n'
        'SESSION_IDLE_MINUTES = 15\n')
    settings = load_settings(tmp_path, GOOD | {"PORTAL_DATABASE_URL": "postgresql://env/db"},
                             override={"SESSION_IDLE_MINUTES": 5})
    assert settings.DATABASE_URL == "postgresql://env/db"
    assert settings.OIDC_ROLES_CLAIM == "realm_access.roles"
    assert settings.SESSION_IDLE_MINUTES == 5


def test_role_map_from_json(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, GOOD | {
        "PORTAL_ROLE_MAP": '{"hr": ["people-ops"], "dpo": ["privacy-office"]}'})
    assert settings.ROLE_MAP == {"hr": ["people-ops"], "dpo": ["privacy-office"]}


@pytest.mark.parametrize(("change", "message"), [
    ({"PORTAL_DATABSE_URL": "x"}, "unknown setting PORTAL_DATABSE_URL in the environment "
                                  "(did you mean PORTAL_DATABASE_URL?)"),
    ({"PORTAL_SECRET_KEY": "short"}, "PORTAL_SECRET_KEY: must be at least 32 characters"),
    ({"PORTAL_ROLE_MAP": "{hr: people-ops}"}, "PORTAL_ROLE_MAP: not valid JSON"),
    ({"PORTAL_ROLE_MAP": '{"boss": ["x"]}'}, "PORTAL_ROLE_MAP.boss"),
    ({"PORTAL_OIDC_ISSUER": "login.example.com"}, "PORTAL_OIDC_ISSUER: must be an http"),
    ({"PORTAL_OIDC_SCOPES": "profile email"}, "PORTAL_OIDC_SCOPES: must include the scope"),
    ({"PORTAL_OIDC_ROLES_CLAIM": "realm_access..roles"}, "PORTAL_OIDC_ROLES_CLAIM: must be a"),
    ({"PORTAL_OIDC_ALGORITHMS": "RS256 none"}, "may not contain 'none'"),
    ({"PORTAL_DEMO": "maybe"}, "PORTAL_DEMO: expected 1/0"),
    ({"PORTAL_MASTER_KEY": "not base64!"}, "PORTAL_MASTER_KEY: must be base64"),
    ({"PORTAL_MASTER_KEY": "c2hvcnQ="}, "PORTAL_MASTER_KEY: must decode to 32 bytes, not 5"),
    ({"PORTAL_DEMO": "1"}, "PORTAL_DEMO is on and PORTAL_OIDC_ISSUER is set"),
    ({"PORTAL_SESSION_IDLE_MINUTES": "0"}, "PORTAL_SESSION_IDLE_MINUTES"),
])
def test_each_mistake_has_a_clear_message(tmp_path: Path, change: dict[str, str],
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_settings(tmp_path, GOOD | change)
    assert message in str(caught.value)


def test_missing_provider_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, {})
    assert str(caught.value) == (
        "missing PORTAL_SECRET_KEY, PORTAL_MASTER_KEY, PORTAL_OIDC_ISSUER, PORTAL_OIDC_CLIENT_ID, "
        "PORTAL_OIDC_CLIENT_SECRET (or set PORTAL_DEMO=1 for the demo)")


def test_secret_values_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, GOOD | {"PORTAL_SECRET_KEY": "hunter2-secret"})
    assert "hunter2" not in str(caught.value)


def test_unknown_key_in_instance_file(tmp_path: Path) -> None:
    (tmp_path / "portal.toml").write_text('OIDC_CLIENTID = "x"\n')
    with pytest.raises(ConfigError, match="did you mean OIDC_CLIENT_ID"):
        load_settings(tmp_path, GOOD)


def test_demo_needs_no_secrets_and_keeps_its_key(tmp_path: Path) -> None:
    first = load_settings(tmp_path, {"PORTAL_DEMO": "1"})
    second = load_settings(tmp_path, {"PORTAL_DEMO": "yes"})
    assert first.DEMO and len(first.SECRET_KEY) >= 32
    assert first.SECRET_KEY == second.SECRET_KEY
    assert first.MASTER_KEY == second.MASTER_KEY
    for name in ("demo-secret-key", "demo-master-key"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


def test_portal_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "from portal.cli import main; main()", "routes"],
        env={"PATH": "/usr/bin:/bin", "PORTAL_INSTANCE_PATH": str(tmp_path),
             "PORTAL_SECRET_KEY": "short"},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "PORTAL_SECRET_KEY: must be at least 32 characters" in result.stderr
