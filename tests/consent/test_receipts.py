"""History and receipts: the person's own changes, signed JSON receipts, the PDF, the public key."""

from __future__ import annotations

import base64
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from weasyprint import HTML

from portal.consent import receipts
from portal.consent.models import ConsentEvent
from portal.db import db
from portal.pdf import BASE_URL, RefusedURL, StaticOnlyFetcher, render_pdf
from tests.support.consent import Chooser
from tests.support.factories import publish_changed_text
from tests.support.identity import SignIn, signed_in


def _receipt_ids(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.scalars(select(ConsentEvent.receipt_id).order_by(ConsentEvent.id)))


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "receipt.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True)
    return " ".join(done.stdout.split())


def test_history_lists_every_change_with_version_time_and_method(
        app: Flask, client: FlaskClient, alex: Chooser) -> None:
    alex.post("keystrokes", "grant")
    alex.post("keystrokes", "withdraw")
    alex.post("clicks", "refuse")
    publish_changed_text(app, "pointer", material=False)
    alex.post("pointer", "grant", version=2)
    response = client.get("/consent/history")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)[1:]
    cells = [[" ".join(re.sub(r"<[^>]+>", " ", cell).split())
              for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)] for row in rows]
    assert [(c[1], c[2], c[3], c[4]) for c in cells] == [
        ("Pointer movements", "Given", "2", "By you, on this portal"),
        ("Clicks", "Declined", "1", "By you, on this portal"),
        ("Keystrokes", "Withdrawn", "1", "By you, on this portal"),
        ("Keystrokes", "Given", "1", "By you, on this portal"),
    ]
    # Local time for the reader, exact UTC on hover.
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', page)
    for receipt_id in _receipt_ids(app):
        assert f"/consent/receipts/{receipt_id}.pdf" in page
        assert f"/consent/receipts/{receipt_id}.jws" in page
    assert "4 changes in total" in page


def test_history_is_paginated(app: Flask, client: FlaskClient, alex: Chooser) -> None:
    for _ in range(14):
        alex.post("pointer", "grant")
        alex.post("pointer", "withdraw")
    first = client.get("/consent/history").get_data(as_text=True)
    assert "28 changes in total, page 1 of 2" in first
    assert first.count("/consent/receipts/") == 2 * 25
    assert 'href="/consent/history?page=2"' in first
    second = client.get("/consent/history?page=2").get_data(as_text=True)
    assert second.count("/consent/receipts/") == 2 * 3
    assert 'href="/consent/history?page=1"' in second
    # Out-of-range pages show the nearest page rather than an empty table.
    assert client.get("/consent/history?page=99").get_data(as_text=True).count(
        "/consent/receipts/") == 2 * 3


def test_empty_history_says_so(client: FlaskClient, alex: Chooser) -> None:
    page = client.get("/consent/history").get_data(as_text=True)
    assert "You have not made any choice yet" in page
    assert "Withdraw all consent" not in page


def test_signed_receipt_verifies_offline(app: Flask, client: FlaskClient, alex: Chooser,
                                         tmp_path: Path) -> None:
    alex.post("keystrokes", "grant")
    [receipt_id] = _receipt_ids(app)
    response = client.get(f"/consent/receipts/{receipt_id}.jws")
    assert response.status_code == 200
    assert response.mimetype == "application/jose"
    assert f'filename="consent-receipt-{receipt_id}.jws"' in response.headers[
        "Content-Disposition"]
    token = response.get_data(as_text=True).strip()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["jku"].endswith("/.well-known/jwks.json")

    jwks = app.test_client().get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    keys = jwks.get_json()["keys"]
    assert [key["kid"] for key in keys] == [header["kid"]]
    assert all("d" not in key for key in keys)

    receipt_file = tmp_path / "receipt.jws"
    receipt_file.write_text(token)
    key_file = tmp_path / "jwks.json"
    key_file.write_text(jwks.get_data(as_text=True))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["receipts", "verify", str(receipt_file), "--key",
                                 str(key_file)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"VALID: receipt {receipt_id}: ConsentGiven for keystrokes")
    # Without --key: the installation's own key.
    assert runner.invoke(args=["receipts", "verify", str(receipt_file)]).exit_code == 0

    claims = receipts.verify_receipt(token, receipts.load_keys(jwks.get_json())).claims
    record = claims["consentRecord"]
    assert claims["version"] == "KI-CR-v1.1.0"
    assert claims["consentReceiptID"] == record["recordId"] == receipt_id
    assert claims["piiPrincipalId"] == "sub-alex"
    assert claims["piiControllers"][0]["piiController"] == "Example Corp"
    assert claims["services"][0]["purposes"][0]["consentType"] == "EXPLICIT"
    assert record["notice"]["version"] == 1
    assert record["language"] == "en"
    assert record["retention"] == {"days": 30}
    assert record["recipients"] and record["purposes"]
    assert record["dataCategories"][0]["key"] == "keystrokes"
    assert record["withdrawal"]["url"].endswith("/categories/keystrokes")
    assert record["event"] == {"time": record["event"]["time"], "actor": {
        "role": "subject", "name": "Alex Morgan"}, "method": "web", "state": "ConsentGiven",
        "stateIri": "https://w3id.org/dpv#ConsentGiven"}
    with app.app_context():
        event = db.scalar(select(ConsentEvent))
        assert event is not None
        assert claims["ledger"]["leafHash"] == event.leaf_hash
        assert claims["ledger"]["chainHash"] == event.chain_hash


def _resign(token: str, change: dict[str, object], app: Flask) -> str:
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    payload.update(change)
    with app.app_context():
        return receipts.sign_receipt(payload, app)


def test_tampered_receipts_are_invalid(app: Flask, client: FlaskClient, alex: Chooser,
                                       tmp_path: Path) -> None:
    alex.post("keystrokes", "grant")
    [receipt_id] = _receipt_ids(app)
    token = client.get(f"/consent/receipts/{receipt_id}.jws").get_data(as_text=True).strip()
    with app.app_context():
        keys = receipts.load_keys(receipts.public_jwks(app))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["consentRecord"]["event"]["state"] = "ConsentWithdrawn"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    check = receipts.verify_receipt(f"{header}.{forged_payload}.{signature}", keys)
    assert not check.valid and "signature does not verify" in check.reason

    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
    assert not receipts.verify_receipt(f"{unsigned_header}.{payload}.", keys).valid
    assert not receipts.verify_receipt("not a receipt", keys).valid

    # Signed by the portal, but the ledger fields do not match the leaf hash.
    ledger = claims["ledger"]
    ledger["fields"]["person_id"] += 1
    resigned = _resign(token, {"ledger": ledger}, app)
    check = receipts.verify_receipt(resigned, keys)
    assert (check.valid, check.reason) == (False, "the ledger leaf hash does not match the "
                                                  "event fields")

    other_key = tmp_path / "other.json"
    from joserfc.jwk import ECKey

    other_key.write_text(json.dumps(ECKey.generate_key("P-256", private=False).as_dict()))
    receipt_file = tmp_path / "receipt.jws"
    receipt_file.write_text(token)
    result = app.test_cli_runner().invoke(args=["receipts", "verify", str(receipt_file),
                                                "--key", str(other_key)])
    assert result.exit_code == 1
    assert result.output.startswith("INVALID: the signature does not verify")


def test_pdf_receipt_is_a_document_to_keep(app: Flask, client: FlaskClient, alex: Chooser,
                                           tmp_path: Path) -> None:
    alex.post("keystrokes", "grant")
    alex.post("keystrokes", "withdraw")
    receipt_id = _receipt_ids(app)[-1]
    response = client.get(f"/consent/receipts/{receipt_id}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    text = _pdf_text(response.data, tmp_path)
    for expected in ("Consent receipt", "Alex Morgan", "alex@example.com", receipt_id,
                     "Keystrokes", "Withdrawn", "ConsentWithdrawn", "By you, on this portal",
                     "Version 1", "UTC", "How to verify this receipt",
                     "/.well-known/jwks.json", "Example Corp",
                     "withdrew consent to the recording of Keystrokes"):
        assert expected in text, expected
    (tmp_path / "consent-receipt.pdf").write_bytes(response.data)


def test_receipts_are_only_the_persons_own(app: Flask, client: FlaskClient, alex: Chooser,
                                           sign_in: SignIn) -> None:
    alex.post("keystrokes", "grant")
    [receipt_id] = _receipt_ids(app)
    for who in ("bea", "chris", "dana", "eli"):
        other = signed_in(app, sign_in, who)
        for suffix in ("jws", "pdf"):
            assert other.get(f"/consent/receipts/{receipt_id}.{suffix}").status_code == 404
    for wrong in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        assert client.get(f"/consent/receipts/{wrong}.pdf").status_code == 404
    anonymous = app.test_client().get(f"/consent/receipts/{receipt_id}.jws")
    assert anonymous.status_code == 302
    assert "/auth/login" in anonymous.headers["Location"]


def test_receipt_key_made_once_private_and_shared(app: Flask, catalog: int) -> None:
    with app.app_context():
        first = receipts.public_jwks(app)
    path = receipts.key_path(app)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    app.extensions.pop("portal.receipt_key")
    with app.app_context():
        assert receipts.public_jwks(app) == first


def test_pdf_fetcher_serves_only_the_portals_stylesheets() -> None:
    fetcher = StaticOnlyFetcher()
    response = fetcher.fetch(BASE_URL + "portal.css")
    assert b"--brand" in response.read()
    for url in ("file:///etc/passwd", "http://127.0.0.1:1/x.css", "https://example.com/a.css",
                BASE_URL + "../../pyproject.toml", BASE_URL + "%2e%2e/__init__.py",
                BASE_URL + "missing.css", "data:text/css,body{}"):
        with pytest.raises(RefusedURL):
            fetcher.fetch(url)
    html = HTML(string='<img src="file:///etc/hostname"><p>x</p>', base_url=BASE_URL,
                url_fetcher=fetcher)
    with pytest.raises(RefusedURL):
        html.write_pdf()


def test_pdf_templates_get_primitive_values_only(app: Flask) -> None:
    with app.test_request_context(), pytest.raises(TypeError, match="primitive"):
        render_pdf("pdf/consent_receipt.html", reference=object())


@pytest.mark.postgresql_only  # rendering does not depend on the database: once is enough
def test_pdf_receipt_speaks_the_persons_language(app: Flask, client: FlaskClient, alex: Chooser,
                                                 tmp_path: Path) -> None:
    client.post("/locale", data={"locale": "fr", "csrf_token": alex.token, "next": "/"})
    alex.post("keystrokes", "grant")
    alex.post("keystrokes", "withdraw")
    receipt_id = _receipt_ids(app)[-1]
    response = client.get(f"/consent/receipts/{receipt_id}.pdf")
    assert response.status_code == 200
    text = _pdf_text(response.data, tmp_path)
    # The portal's words, the catalog's French text, Babel's French date and plural.
    # (French writes its apostrophe as U+2019.)
    for expected in ("Reçu de consentement", "Alex Morgan a retiré son consentement à "
                     "l'enregistrement de la catégorie Frappes au clavier.",
                     "Retiré (ConsentWithdrawn)", "Par vous, sur ce portail",
                     "Entraîner l'assistant interne à compléter du code",
                     "Comment vérifier ce reçu", "30 jours après l'enregistrement.",
                     "Délivré le"):
        assert expected.replace("'", "\u2019") in text, expected
    assert re.search(r"publiée le \d{1,2} (janvier|février|mars|avril|mai|juin|juillet|août|"
                     r"septembre|octobre|novembre|décembre) \d{4}", text), text
    assert "Consent receipt" not in text and "By you" not in text
    (tmp_path / "consent-receipt-fr.pdf").write_bytes(response.data)
