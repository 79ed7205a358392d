"""Rotating the receipt signing key: receipts signed before it still verify at the JWKS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal import create_app
from portal.config import ConfigError
from portal.consent.receipts import load_keys, open_signed, sign_document


def make_app(settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             **overrides: Any) -> Flask:
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app({**settings, **overrides})


def test_retired_keys_are_published_beside_the_new_one(
        settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = make_app(settings, tmp_path, monkeypatch,
                      RECEIPT_KEY_FILE=str(tmp_path / "receipt-key-1.jwk"))
    with before.app_context():
        old_receipt = sign_document({"claim": "signed before the rotation"})
    saved = before.test_client().get("/.well-known/jwks.json").get_data(as_text=True)
    retired = tmp_path / "receipt-keys-retired.jwks"
    retired.write_text(saved)

    without = make_app(settings, tmp_path, monkeypatch,
                       RECEIPT_KEY_FILE=str(tmp_path / "receipt-key-2.jwk"))
    jwks = without.test_client().get("/.well-known/jwks.json").json
    assert len(jwks["keys"]) == 1
    assert not open_signed(old_receipt, load_keys(jwks)).valid

    after = make_app(settings, tmp_path, monkeypatch,
                     RECEIPT_KEY_FILE=str(tmp_path / "receipt-key-2.jwk"),
                     RECEIPT_RETIRED_KEYS_FILE=str(retired))
    with after.app_context():
        new_receipt = sign_document({"claim": "signed after the rotation"})
    jwks = after.test_client().get("/.well-known/jwks.json").json
    assert len(jwks["keys"]) == 2 and all("d" not in key for key in jwks["keys"])
    assert jwks["keys"][1] == json.loads(saved)["keys"][0]
    keys = load_keys(jwks)
    assert open_signed(old_receipt, keys).claims == {"claim": "signed before the rotation"}
    assert open_signed(new_receipt, keys).claims == {"claim": "signed after the rotation"}


def test_a_private_key_in_the_retired_file_is_not_published(
        settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_app(settings, tmp_path, monkeypatch,
                     RECEIPT_KEY_FILE=str(tmp_path / "receipt-key-1.jwk"))
    with first.app_context():
        sign_document({"claim": "x"})  # makes the key file
    retired = tmp_path / "receipt-key-1.jwk"  # the private key file itself, by mistake
    app = make_app(settings, tmp_path, monkeypatch,
                   RECEIPT_KEY_FILE=str(tmp_path / "receipt-key-2.jwk"),
                   RECEIPT_RETIRED_KEYS_FILE=str(retired))
    jwks = app.test_client().get("/.well-known/jwks.json").json
    assert len(jwks["keys"]) == 2 and all("d" not in key for key in jwks["keys"])


def test_a_missing_retired_keys_file_stops_the_start(settings: dict[str, Any],
                                                      tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PORTAL_RECEIPT_RETIRED_KEYS_FILE: no such file"):
        create_app({**settings, "RECEIPT_RETIRED_KEYS_FILE": str(tmp_path / "nowhere.jwks")})
