"""A sealed snapshot read back as its client would: Croissant (mlcroissant), DuckDB, datasets.

The snapshot is made directly (parts written with pyarrow through the encrypting writer),
sealed, and every file decrypted into a folder, as a client downloads them.
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

from portal.db import commit
from portal.training.manifest import seal_snapshot
from tests.support.training_files import decrypt_snapshot, small_sealable_snapshot

MLCROISSANT = Path(sys.executable).parent / "mlcroissant"


@pytest.fixture
def download(app: Flask, catalog: int, tmp_path: Path) -> Path:
    """The folder a client downloaded the sealed snapshot's files to (decrypted)."""
    with app.app_context():
        snapshot, key = small_sealable_snapshot()
        seal_snapshot(snapshot, key)
        commit()
        folder = tmp_path / "download"
        decrypt_snapshot(snapshot, key, folder)
    return folder


def _croissant(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "croissant.json").read_text())
    return document


def test_mlcroissant_validates_it(download: Path) -> None:
    # As its users run it: the command line validator.
    result = subprocess.run([str(MLCROISSANT), "validate", "--jsonld",
                             str(download / "croissant.json")],
                            capture_output=True, text=True, timeout=300, check=False,
                            env=os.environ | {"HOME": str(download.parent)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done." in result.stdout + result.stderr


def test_it_says_what_the_portal_knows(download: Path) -> None:
    document = _croissant(download)
    assert document["conformsTo"] == ["http://mlcommons.org/croissant/1.1",
                                      "http://mlcommons.org/croissant/RAI/1.0"]
    assert document["name"] == "training-dataset-1"
    assert document["license"]["name"] == "Internal use by Example Corp only"
    assert document["rai:dataCollectionTimeframe"] == ["2026-03-01T00:00:00.000000Z",
                                                       "2026-03-31T00:00:00.000000Z"]
    files = {item["@id"]: item for item in document["distribution"]}
    assert set(files) == {"keystrokes/part-00001.parquet", "keystrokes/part-00002.parquet",
                          "conversations/part-00003.parquet", "keystrokes-parquet-files",
                          "conversations-parquet-files"}
    for path in ("keystrokes/part-00001.parquet", "conversations/part-00003.parquet"):
        assert files[path]["encodingFormat"] == "application/x-parquet"
        assert files[path]["contentUrl"] == path
        assert files[path]["contentSize"] == f"{(download / path).stat().st_size} B"
    protocol = document["rai:dataPreprocessingProtocol"]
    assert any("notice version 1" in step for step in protocol)
    assert "Included: 12 records (Keystrokes 8, Private conversations 4)." in protocol
    assert any(step.startswith("Left out (no_consent)") and step.endswith(": 40 records.")
               for step in protocol)
    assert any(step.startswith("Left out (sensitive_document)") and step.endswith(": 3 records.")
               for step in protocol)
    personal = " ".join(document["rai:personalSensitiveInformation"])
    assert "Keystrokes: sensitivity level 3" in personal
    assert "the fields author, participants name other people" in personal
    [keystrokes] = [item for item in document["recordSet"] if item["@id"] == "keystrokes"]
    assert [field["name"] for field in keystrokes["field"]] == [
        "person", "t", "app", "keys", "duration_ms"]
    assert keystrokes["field"][3]["description"].startswith("The text you typed in one go")


# Two deprecations inside third-party code, nothing we call: mlcroissant parses the JSON-LD
# with rdflib's parser, which makes a ConjunctiveGraph that rdflib itself deprecates, and it
# reads Parquet into pandas with reset_index(inplace=True), which pandas 3.1 deprecates.
@pytest.mark.filterwarnings(
    "ignore:ConjunctiveGraph is deprecated, use Dataset instead:DeprecationWarning:rdflib")
@pytest.mark.filterwarnings(
    "ignore:The inplace keyword in DataFrame.reset_index is deprecated"
    ":pandas.errors.Pandas4Warning:mlcroissant")
def test_mlcroissant_loads_every_record_set(download: Path) -> None:
    import mlcroissant

    dataset = mlcroissant.Dataset(jsonld=str(download / "croissant.json"))
    keystrokes = list(dataset.records("keystrokes"))
    assert len(keystrokes) == 8
    first = min(keystrokes, key=lambda record: record["keystrokes/t"])
    assert first["keystrokes/app"] == b"code editor"
    assert first["keystrokes/duration_ms"] == 1000
    assert first["keystrokes/person"].startswith(b"s-")
    conversations = list(dataset.records("conversations"))
    assert len(conversations) == 4
    assert sorted(len(record["conversations/participants"]) for record in conversations) == [
        1, 1, 2, 2]


def test_duckdb_reads_the_parquet_files(download: Path) -> None:
    connection = duckdb.connect()

    def query(sql: str, category: str) -> list[tuple[Any, ...]]:
        return connection.execute(sql, [str(download / category / "*.parquet")]).fetchall()

    assert query("select count(*), count(distinct person) from read_parquet(?)",
                 "keystrokes") == [(8, 4)]
    described = query("describe select * from read_parquet(?)", "keystrokes")
    assert [(name, kind) for name, kind, *_ in described] == [
        ("person", "VARCHAR"), ("t", "TIMESTAMP WITH TIME ZONE"), ("app", "VARCHAR"),
        ("keys", "VARCHAR"), ("duration_ms", "BIGINT")]
    assert query("select count(*), sum(len(participants)) from read_parquet(?)",
                 "conversations") == [(4, 6)]


def test_hugging_face_datasets_loads_them(download: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing to the network or the home folder.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    loaded = datasets.load_dataset(
        "parquet", data_files={"train": str(download / "keystrokes" / "*.parquet")},
        cache_dir=str(tmp_path / "hf-cache"))
    train = loaded["train"]
    assert train.num_rows == 8
    assert train.column_names == ["person", "t", "app", "keys", "duration_ms"]
    assert sorted(train["duration_ms"]) == [1000, 1000, 1001, 1001, 1002, 1002, 1003, 1004]
    assert min(train["t"]) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
