"""Issue 17 end to end, through the real paths only: a client registered by command, records
collected through the vault, a snapshot asked for through the API and built by the worker's
command, its files downloaded, verified and read back as a client would; the person's access
log and page; and the notice's promises on withdrawal, deletion and retirement. Then the race
of a withdrawal that commits while a part is being built.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.consent.receipts import load_keys, open_signed, public_jwks
from portal.db import commit, db
from portal.requests import service as requests_service
from portal.requests.models import DeletionScope
from portal.training import build, lineage
from portal.training.files import snapshot_folder
from portal.training.keys import open_snapshot_key
from portal.training.models import (
    OutdatedReason,
    SnapshotEvent,
    SnapshotState,
    TrainingSnapshot,
)
from portal.training.overview import CategoryHeld, describe_training_for
from portal.vault.errors import VaultIntegrityError
from tests.support.batches import recent
from tests.support.collector_api import bearer
from tests.support.consent import Chooser
from tests.support.factories import create_person, grant, withdraw
from tests.support.identity import SignIn, signed_in
from tests.support.training import (
    ask_snapshot,
    holding,
    keystrokes,
    ratings,
    read_dataset,
    reload,
)
from tests.support.training_e2e import (
    KEYS,
    SENSITIVE,
    SNAPSHOTS,
    TOO_SENSITIVE,
    ask,
    collect,
    create_client,
    person,
    register_model,
    work,
)
from tests.support.training_lineage import verified_payload, webhook_receiver

PURPOSE_NAME = "Code and text assistance"
MLCROISSANT = Path(sys.executable).parent / "mlcroissant"



def _held(person_id: int) -> list[CategoryHeld]:
    """Return what the person's own page lists: each dataset's categories, newest first."""
    return [category for dataset in describe_training_for(person_id, "en")
            for category in dataset.categories]

def _download(api: FlaskClient, token: str, described: dict[str, Any], folder: Path) -> Path:
    """Download every listed file into ``folder``; write the manifest beside it."""
    for item in described["files"]:
        response = api.get(item["url"], headers=bearer(token))
        assert response.status_code == 200, response.get_data(as_text=True)
        target = folder / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.get_data())
        assert target.stat().st_size == item["size"]
    manifest = folder.parent / "manifest.jws"
    manifest.write_text(described["manifest"])
    return manifest


def _rows(folder: Path) -> list[tuple[str, str]]:
    """Read the keystrokes back with DuckDB: (person, keys), sorted."""
    connection = duckdb.connect()
    found = connection.execute("select person, keys from read_parquet(?) order by 1, 2",
                               [str(folder / KEYS / "*.parquet")]).fetchall()
    return [(str(person), str(keys)) for person, keys in found]


def _pseudonyms(app: Flask, public_id: str, **people: int) -> dict[str, str]:
    with app.app_context():
        snapshot = db.scalar(select(TrainingSnapshot)
                             .where(TrainingSnapshot.public_id == public_id))
        assert snapshot is not None
        key = open_snapshot_key(snapshot)
        return {name: key.pseudonym(person_id) for name, person_id in people.items()}


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return " ".join(response.get_data(as_text=True).split())


@pytest.mark.filterwarnings(
    "ignore:ConjunctiveGraph is deprecated, use Dataset instead:DeprecationWarning:rdflib")
def test_the_issue_end_to_end(app: Flask, sign_in: SignIn, catalog: int, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    alex_web, bea_web = signed_in(app, sign_in, "alex"), signed_in(app, sign_in, "bea")
    Chooser(alex_web, catalog).post(KEYS, "grant").close()
    Chooser(bea_web, catalog).post(KEYS, "grant").close()
    api = app.test_client()
    with webhook_receiver() as receiver:
        token, secret = create_client(app, receiver.url)
        people = collect(app)

        # 1. Asked for through the API, built by the worker's command.
        public_id = ask(api, token)
        assert "built 1 part(s)" in work(app)
        described = api.get(f"{SNAPSHOTS}/{public_id}", headers=bearer(token)).json
        assert described["state"] == "ready" and described["number"] == 1
        assert described["counts"] == {"included": 5, "excluded": {
            "above_max_dss": 1, "no_consent": 1, "ratings_missing": 2,
            "sensitive_document": 2}}
        assert [item["path"] for item in described["files"]] == [
            "keystrokes/part-00001.parquet", "croissant.json"]

        # 3. Downloaded, verified with the command, read back by three readers.
        folder = tmp_path / "download" / "files"
        manifest = _download(api, token, described, folder)
        verified = app.test_cli_runner().invoke(args=["training", "verify", str(manifest),
                                                      "--files", str(folder)])
        assert verified.exit_code == 0, verified.output
        assert "all 2 files match" in verified.output
        names = _pseudonyms(app, public_id, alex=people.ids["alex"], bea=people.ids["bea"])
        assert _rows(folder) == sorted([(names["alex"], "alex-plain")] * 2
                                       + [(names["bea"], "bea-plain")] * 3)
        every_value = json.dumps(duckdb.connect().execute(
            "select * from read_parquet(?)", [str(folder / KEYS / "*.parquet")]).fetchall(),
            default=str)
        for workplace in people.workplace:
            assert workplace not in every_value
        for left_out in ("alex-near-secret", "bea-too-sensitive", "carl-unrated",
                         "dora-withdrawn"):
            assert left_out not in every_value
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        import datasets

        loaded = datasets.load_dataset(
            "parquet", data_files={"train": str(folder / KEYS / "*.parquet")},
            cache_dir=str(tmp_path / "hf-cache"))["train"]
        assert sorted(zip(loaded["person"], loaded["keys"], strict=True)) == _rows(folder)
        validated = subprocess.run(
            [str(MLCROISSANT), "validate", "--jsonld", str(folder / "croissant.json")],
            capture_output=True, text=True, timeout=300, check=False,
            env=os.environ | {"HOME": str(tmp_path)})
        assert validated.returncode == 0, validated.stdout + validated.stderr

        # 5. A model trained on it.
        register_model(api, token, public_id)

        # 4 and 5. Each person sees their own read and counts, nobody else's.
        alex_log = _page(alex_web, "/access-log")
        assert (f"Training dataset 1 for the purpose “{PURPOSE_NAME}” read 2 of your records "
                "in “Keystrokes”") in alex_log
        bea_log = _page(bea_web, "/access-log")
        assert (f"Training dataset 1 for the purpose “{PURPOSE_NAME}” read 3 of your records "
                "in “Keystrokes”") in bea_log
        alex_page = _page(alex_web, "/my-data/training")
        assert f"Training dataset 1: {PURPOSE_NAME}" in alex_page
        assert SENSITIVE in alex_page and TOO_SENSITIVE not in alex_page
        assert "completion-llm, version 2.0" in alex_page
        bea_page = _page(bea_web, "/my-data/training")
        assert TOO_SENSITIVE in bea_page and SENSITIVE not in bea_page

        # 6a. Alex withdraws on the portal: the snapshot is outdated, the client told.
        Chooser(alex_web, catalog).post(KEYS, "withdraw").close()
        assert receiver.arrived.wait(10), "no notice after the withdrawal"
        [notice] = receiver.received
        payload = verified_payload(notice, secret)
        assert payload["type"] == "training.snapshot.outdated"
        assert payload["data"]["snapshot"] == public_id
        assert payload["data"]["reasons"] == ["withdrawn"]
        changes = api.get("/api/v1/training/changes", headers=bearer(token)).json["changes"]
        assert [(change["snapshot"], change["type"], change["reasons"]) for change in changes] \
            == [(public_id, "snapshot.outdated", ["withdrawn"])]
        assert api.get(f"{SNAPSHOTS}/{public_id}",
                       headers=bearer(token)).json["outdated_at"] is not None

        # "Not used in any new training run": a new snapshot leaves Alex out.
        second = ask(api, token)
        work(app)
        later = api.get(f"{SNAPSHOTS}/{second}", headers=bearer(token)).json
        assert later["state"] == "ready"
        assert later["counts"]["included"] == 3
        assert later["counts"]["excluded"]["no_consent"] == 1 + 4  # Dora's, Alex's
        later_folder = tmp_path / "second" / "files"
        _download(api, token, later, later_folder)
        renamed = _pseudonyms(app, second, alex=people.ids["alex"], bea=people.ids["bea"])
        assert renamed["bea"] != names["bea"]  # pseudonyms keyed per snapshot
        assert _rows(later_folder) == [(renamed["bea"], "bea-plain")] * 3
        with app.app_context():
            assert holding(_snapshot(second), person("sub-alex"), KEYS) == (
                0, {"no_consent": 4})
        # The old snapshot still holds Alex's records (models keep what they learned).
        alex_page = _page(alex_web, "/my-data/training")
        assert "Training dataset 1" in alex_page and "Training dataset 2" in alex_page
        assert "The records used here are outdated: you withdrew your consent." in alex_page
        assert ("4 records left out: you had not given your consent, or had withdrawn it, "
                "when the dataset was made.") in alex_page

    # 6b. Bea's deletion request, executed by the DPO: the certificate names what held it.
    with app.app_context():
        dana = create_person("sub-dana-dpo", groups=("privacy-office",))
        request = requests_service.submit_deletion_request(person("sub-bea"),
                                                           scope=DeletionScope.ALL)
        requests_service.approve_deletion(request, dpo=dana)
        commit()
        requests_service.execute_deletion(request, actor=dana)
        commit()
        claims = open_signed(request.certificate_jws or "", load_keys(public_jwks())).claims
    training = claims["training"]
    assert sorted(item["number"] for item in training["snapshots"]) == [1, 2]
    assert [(item["name"], item["version"]) for item in training["models"]] == [
        ("completion-llm", "2.0")]

    # 6c. Retired through the API: key and files gone, the certificate verifies.
    retired = api.post(f"{SNAPSHOTS}/{public_id}/retire", headers=bearer(token))
    assert retired.status_code == 200, retired.json
    assert retired.json["state"] == "retired"
    gone = api.get(described["files"][0]["url"], headers=bearer(token))
    assert gone.status_code in {404, 409} and gone.json["error"]
    with app.app_context():
        snapshot = _snapshot(public_id)
        assert snapshot.state is SnapshotState.RETIRED
        assert not snapshot_folder(snapshot).exists()
        with pytest.raises(VaultIntegrityError, match="was retired"):
            open_snapshot_key(snapshot)
    certificate = tmp_path / "retirement.jws"
    certificate.write_text(retired.json["certificate"])
    checked = app.test_cli_runner().invoke(args=["receipts", "verify", str(certificate)])
    assert checked.exit_code == 0, checked.output
    assert "key destroyed, 2 files removed, 1 models trained on it" in checked.output


def _snapshot(public_id: str) -> TrainingSnapshot:
    found = db.scalar(select(TrainingSnapshot).where(TrainingSnapshot.public_id == public_id)
                      .execution_options(populate_existing=True))
    assert found is not None
    return found


# --- the race: a withdrawal that commits while a part is being built -------------------------

def test_a_withdrawal_while_a_part_is_built_marks_the_ready_snapshot(
        app: Flask, catalog: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The part reads consent when it starts; Alex withdraws (another unit of work, committed)
    after that read and before the part is recorded. The withdrawal finds no holding to mark;
    the recording must find the withdrawal, or the snapshot ends ready holding Alex unmarked.
    """
    with app.app_context():
        alex, bea = create_person("sub-race-alex"), create_person("sub-race-bea")
        for someone in (alex, bea):
            grant(someone, KEYS)
            ratings(someone, (recent(600), 1))
            keystrokes(someone, recent(60), recent(59))
        snapshot = ask_snapshot(categories=[KEYS], collected_from=recent(24 * 60),
                                collected_to=recent(0) + dt.timedelta(minutes=1))
        commit()
        alex_id, snapshot_id = alex.id, snapshot.id

    record_part = build._record_part
    withdrawn: list[int] = []

    def withdraw_then_record(*args: Any, **kwargs: Any) -> None:
        # Between the read (PartRules, done) and the recording, in a unit of work of its own.
        with app.app_context():
            withdraw(db.get_one(Person, alex_id), KEYS)
            commit()
            withdrawn.append(len(list(db.scalars(select(SnapshotEvent)))))
        record_part(*args, **kwargs)

    monkeypatch.setattr(build, "_record_part", withdraw_then_record)
    with app.app_context():
        assert build.work("racer") == 1
        assert withdrawn == [0]  # the withdrawal itself found nothing to mark
        ready = reload(db.get_one(TrainingSnapshot, snapshot_id))
        assert ready.state is SnapshotState.READY
        assert ready.outdated_at is not None
        alex = db.get_one(Person, alex_id)
        assert holding(ready, alex, KEYS) == (2, {})  # built from the read before
        marked = _held(alex_id)
        assert [(held.included, held.outdated_reason) for held in marked] == [
            (2, OutdatedReason.WITHDRAWN)]
        assert read_dataset(ready, KEYS).num_rows == 4
        [change] = lineage.list_snapshot_changes(ready.client, 0, 10)
        assert (change.kind.value, change.reasons) == ("outdated", ["withdrawn"])
        # Bea, who did not withdraw, is not marked.
        bea = db.scalar(select(Person).where(Person.subject == "sub-race-bea"))
        assert bea is not None
        assert [held.outdated_at is not None for held in _held(bea.id)] == [False]


def test_an_erasure_while_a_part_is_built_marks_the_ready_snapshot(
        app: Flask, catalog: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the withdrawal above, with Alex's deletion request approved and executed by a DPO
    between the part's read and its recording."""
    with app.app_context():
        alex = create_person("sub-erase-alex")
        create_person("sub-erase-dpo", groups=("privacy-office",))
        grant(alex, KEYS)
        ratings(alex, (recent(600), 1))
        keystrokes(alex, recent(60), recent(59))
        snapshot = ask_snapshot(categories=[KEYS], collected_from=recent(24 * 60),
                                collected_to=recent(0) + dt.timedelta(minutes=1))
        commit()
        alex_id, snapshot_id = alex.id, snapshot.id
    record_part = build._record_part

    def erase_then_record(*args: Any, **kwargs: Any) -> None:
        with app.app_context():
            dpo = person("sub-erase-dpo")
            request = requests_service.submit_deletion_request(
                db.get_one(Person, alex_id), scope=DeletionScope.ALL)
            requests_service.approve_deletion(request, dpo=dpo)
            commit()
            requests_service.execute_deletion(request, actor=dpo)
            commit()
        record_part(*args, **kwargs)

    monkeypatch.setattr(build, "_record_part", erase_then_record)
    with app.app_context():
        assert build.work("racer") == 1
        ready = reload(db.get_one(TrainingSnapshot, snapshot_id))
        assert ready.state is SnapshotState.READY and ready.outdated_at is not None
        assert [(held.included, held.outdated_reason)
                for held in _held(alex_id)] == [(2, OutdatedReason.ERASED)]


def test_a_withdrawal_after_one_part_is_recorded_marks_it_and_the_rest_leaves_them_out(
        app: Flask, catalog: int) -> None:
    """The plain order: one part recorded, a withdrawal, then the other parts."""
    app.config["TRAINING_PART_PEOPLE"] = 1
    with app.app_context():
        crowd = [create_person(f"sub-order-{index}") for index in range(3)]
        for someone in crowd:
            grant(someone, KEYS, "pointer")
            ratings(someone, (recent(600), 1))
            keystrokes(someone, recent(60))
        snapshot = ask_snapshot(categories=[KEYS], collected_from=recent(24 * 60),
                                collected_to=recent(0) + dt.timedelta(minutes=1))
        commit()
        assert build.work("first", until_idle=False) == 1  # crowd[0]'s part
        withdraw(crowd[0], KEYS)
        withdraw(crowd[1], KEYS)
        commit()
        assert build.work("rest") == 2
        ready = reload(snapshot)
        assert ready.state is SnapshotState.READY and ready.outdated_at is not None
        assert holding(ready, crowd[0], KEYS) == (1, {})
        assert holding(ready, crowd[1], KEYS) == (0, {"no_consent": 1})
        assert [held.outdated_reason for held in _held(crowd[0].id)
                ] == [OutdatedReason.WITHDRAWN]
        assert [held.outdated_at is not None for held in _held(crowd[2].id)] == [
            False]

