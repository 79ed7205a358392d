"""The DPO's request page and the certificate of deletion name the training datasets and models."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.consent.receipts import load_keys, open_signed, public_jwks
from portal.db import commit
from portal.pdf import render_pdf
from portal.requests import service
from portal.requests.certificate import certificate_context, check_certificate
from portal.requests.models import DeletionRequest, DeletionScope
from portal.training.models import TrainingSnapshot
from tests.support.browser import SCREENSHOTS
from tests.support.config import portal_settings
from tests.support.deletion import Cast, approved, collect
from tests.support.factories import account_person, create_person
from tests.support.identity import DPO_GROUPS, SignIn, signed_in
from tests.support.smtp import Inbox
from tests.support.training_views import (
    add_client,
    add_model,
    add_snapshot,
    hold,
    name_training_purposes,
)


@pytest.fixture
def settings(database_url: str, idp: Any, smtp: tuple[Inbox, int]) -> dict[str, Any]:
    """The real identity provider, and mail through the test SMTP server."""
    values = portal_settings(database_url, idp[0].issuer, "http://localhost")
    values.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_SECURITY="none",
                  DPO_TEAM_EMAIL="privacy-team@example.com")
    return values


def _datasets(alex: Any, bea: Any) -> tuple[TrainingSnapshot, TrainingSnapshot]:
    """Dataset 21 holds Alex and Bea; dataset 22 (retired) only Alex; a model on both."""
    client = add_client()
    first = add_snapshot(client, 21, categories=("keystrokes", "pointer"))
    hold(first, alex, "keystrokes", 1234, {"sensitive_document": 412})
    hold(first, alex, "pointer", 3)
    hold(first, bea, "keystrokes", 4321)
    second = add_snapshot(client, 22, retired=True)
    hold(second, alex, "keystrokes", 2)
    add_model(client, "helper-llm", "3.1", [first, second])
    return first, second


@pytest.fixture
def request_of_alex(app: Flask, sign_in: SignIn, catalog: int) -> tuple[str, dict[str, Any]]:
    """Alex's deletion request, waiting for the DPO; Alex and Bea in training datasets."""
    clients = {who: signed_in(app, sign_in, who) for who in ("alex", "bea", "dana", "eli")}
    alex, bea = account_person(app, "alex"), account_person(app, "bea")
    with app.app_context():
        name_training_purposes()
        _datasets(alex, bea)
        request = service.submit_deletion_request(alex, scope=DeletionScope.ALL)
        commit()
        return request.reference, clients


def test_the_dpo_sees_the_persons_datasets_and_models(
        app: Flask, request_of_alex: tuple[str, dict[str, FlaskClient]]) -> None:
    reference, clients = request_of_alex
    response = clients["dana"].get(f"/dpo/requests/{reference}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Training datasets holding this person's records" in page
    assert "Task assistant" in page
    assert "Keystrokes: 1,234 records used" in page and "412 left out" in page
    assert "Pointer movements: 3 records used" in page
    assert "Retired: deleted" in page and "Ready" in page
    assert "helper-llm 3.1" in page
    # Bea is in dataset 21 too: nothing of her shows on Alex's request.
    assert "4,321" not in page


@pytest.mark.parametrize("who", ["alex", "eli"])
def test_only_the_dpo_opens_the_request_page(
        app: Flask, request_of_alex: tuple[str, dict[str, FlaskClient]], who: str) -> None:
    reference, clients = request_of_alex
    assert clients[who].get(f"/dpo/requests/{reference}").status_code == 403


@pytest.fixture
def executed(app: Flask, ctx: None) -> DeletionRequest:
    """Alex's data collected, in two datasets, deleted by Dana (no identity provider needed)."""
    cast = Cast(create_person("alex"), create_person("dana", groups=DPO_GROUPS),
                create_person("dora", groups=DPO_GROUPS))
    name_training_purposes()
    collect(cast.alex)
    _datasets(cast.alex, create_person("bea"))
    commit()
    request = approved(cast)
    return service.execute_deletion(request, actor=cast.dana)


def test_the_certificate_lists_the_datasets_and_models(
        app: Flask, executed: DeletionRequest, tmp_path: Path) -> None:
    claims = open_signed(executed.certificate_jws or "", load_keys(public_jwks())).claims
    training = claims["training"]
    assert [(item["number"], item["purpose"], item["state"], item["records"])
            for item in training["snapshots"]] == [
        (22, "task_assistant", "retired", {"keystrokes": 2}),
        (21, "task_assistant", "outdated", {"keystrokes": 1234, "pointer": 3})]
    assert training["snapshots"][0]["retiredAt"] is not None
    assert [(model["name"], model["version"], model["snapshots"])
            for model in training["models"]] == [("helper-llm", "3.1", [22, 21])]
    assert check_certificate(claims, "tests").valid
    training["models"][0]["snapshots"].append(99)
    assert not check_certificate(claims, "tests").valid
    training["models"][0]["snapshots"].pop()

    # The deletion itself marked dataset 21 outdated: it holds records now erased.
    with app.test_request_context():
        context = certificate_context(claims)
        assert [item["state"] for item in context["training_snapshots"]] == [
            "Retired: deleted", "Marked outdated"]
        assert context["training_snapshots"][1]["records"] == [
            "1,234 of your records in “Keystrokes”", "3 of your records in “Pointer movements”"]
        pdf = render_pdf("pdf/deletion_certificate.html", **context)
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout
    assert "Training datasets and models" in text and "helper-llm, version 3.1" in text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "70", str(path),
                    str(SCREENSHOTS / "deletion-certificate-training")], check=True)


def test_a_certificate_without_training_still_prints(app: Flask, ctx: None) -> None:
    cast = Cast(create_person("alex"), create_person("dana", groups=DPO_GROUPS),
                create_person("dora", groups=DPO_GROUPS))
    collect(cast.alex)
    commit()
    done = service.execute_deletion(approved(cast), actor=cast.dana)
    claims = open_signed(done.certificate_jws or "", load_keys(public_jwks())).claims
    assert claims["training"] == {"snapshots": [], "models": []}
    del claims["training"]  # as in certificates issued before training datasets existed
    with app.test_request_context():
        assert certificate_context(claims)["training_snapshots"] == []
