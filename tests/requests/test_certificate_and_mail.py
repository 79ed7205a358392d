"""The signed certificate and its check; mail at each step, in the recipient's language."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from portal.consent.receipts import load_keys, open_signed, public_jwks
from portal.db import commit, db
from portal.mail import MailMessage, MailState, send_pending
from portal.requests import service
from portal.requests.models import DeletionScope
from tests.support.deletion import Cast, approved
from tests.support.factories import create_person
from tests.support.identity import DPO_GROUPS
from tests.support.smtp import Inbox


def test_the_certificate_states_what_was_deleted_and_verifies(
        app: Flask, cast: Cast, tmp_path: Path) -> None:
    request = approved(cast)
    service.execute_deletion(request, actor=cast.dana)
    token = request.certificate_jws
    assert token
    claims = open_signed(token, load_keys(public_jwks())).claims
    assert claims["type"] == "deletion-certificate"
    assert claims["totals"] == {"categories": 2, "batches": 3, "events": 6, "keysDestroyed": 2}
    assert {item["category"] for item in claims["deleted"]} == {"keystrokes", "pointer"}
    assert claims["executed"]["by"] == "Dana" and claims["decision"]["by"] == "Dana"
    # Metadata only: none of the typed text is in it.
    assert "beta-typed" not in token and "beta-typed" not in json.dumps(claims)

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(public_jwks()))
    signed = tmp_path / "certificate.jws"
    signed.write_text(token)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["receipts", "verify", str(signed), "--key", str(jwks)])
    assert result.exit_code == 0, result.output
    assert "VALID: certificate of deletion" in result.output and "3 batches" in result.output

    header, payload, signature = token.split(".")
    altered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    altered["totals"]["batches"] = 0
    forged = base64.urlsafe_b64encode(json.dumps(altered).encode()).decode().rstrip("=")
    signed.write_text(f"{header}.{forged}.{signature}")
    result = runner.invoke(args=["receipts", "verify", str(signed), "--key", str(jwks)])
    assert result.exit_code == 1 and "INVALID" in result.output


def test_kept_items_are_on_the_certificate(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    service.approve_in_part(request, dpo=cast.dana, kept={"pointer": "Legal hold"})
    commit()
    service.execute_deletion(request, actor=cast.dana)
    claims = open_signed(request.certificate_jws or "", load_keys(public_jwks())).claims
    assert claims["kept"] == [{"category": "pointer", "reason": "Legal hold"}]
    assert [item["category"] for item in claims["deleted"]] == ["keystrokes"]


def test_mail_reaches_the_employee_in_their_language_and_the_team(
        app: Flask, ctx: None, smtp: tuple[Inbox, int]) -> None:
    inbox = smtp[0]
    greta = create_person("greta", locale="de")
    dana = create_person("dana", groups=DPO_GROUPS)
    commit()
    request = service.submit_deletion_request(greta, scope=DeletionScope.ALL,
                                              now=dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC))
    service.refuse_request(request, dpo=dana, reason="Laufendes Verfahren")
    commit()
    run = send_pending(app)
    assert run.sent == 4
    # Written in German for Greta (dates by the locale's rules; the wording comes from the
    # German catalogue once translated), in the default language for the team.
    to_greta = inbox.to("greta@example.com")
    assert [message["Content-Language"] for message in to_greta] == ["de", "de"]
    received = to_greta[0].get_payload(decode=True).decode()
    assert "28. Februar 2026" in received and request.reference in received
    refused = to_greta[1].get_payload(decode=True).decode()
    assert "Laufendes Verfahren" in refused
    team = inbox.to("privacy-team@example.com")
    assert [message["Content-Language"] for message in team] == ["en", "en"]
    assert [message["Subject"] for message in team] == ["New deletion request",
                                                        "Deletion request refused"]
    team_body = team[0].get_payload(decode=True).decode()
    assert "February 28, 2026" in team_body and "greta" not in team_body.lower()


def test_a_failed_send_keeps_the_request_and_the_mail(app: Flask, cast: Cast,
                                                      smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    app.config["SMTP_PORT"] = 9  # nothing listens there
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    commit()
    run = send_pending(app)
    assert run.sent == 0 and run.retrying == 2
    db.expire_all()
    assert service.find_request(request.reference) is not None
    pending = list(db.scalars(select(MailMessage)))
    assert {message.state for message in pending} == {MailState.PENDING}
    assert all(message.attempts == 1 and message.last_error for message in pending)
    app.config["SMTP_PORT"] = port
    db.execute(MailMessage.__table__.update().values(next_attempt_at=pending[0].created_at))
    commit()
    result = app.test_cli_runner().invoke(args=["mail", "send"])
    assert result.exit_code == 0 and "2 sent" in result.output
    assert len(inbox.messages) == 2
