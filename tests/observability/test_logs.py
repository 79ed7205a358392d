"""Structured logs: one JSON object per line, a request id on each, one access line per request."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Flask, request

from portal import create_app
from portal.config import ConfigError
from tests.support.observability import access_lines, json_lines

HOSTILE = 'evil\r\n{"level": "ERROR", "logger": "portal.auth", "message": "forged"}\n'


@pytest.fixture
def echo_app(app: Flask) -> Flask:
    """The app with one more page that logs whatever it is sent, as a careless view might."""

    def echo(name: str) -> str:
        logging.getLogger("portal.echo").warning("got %s", request.args.get("value", ""))
        return "ok"

    app.add_url_rule("/echo/<name>", "echo", echo)
    return app


def test_every_line_of_a_request_carries_its_id_and_one_access_line_ends_it(
        echo_app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    client = echo_app.test_client()
    capsys.readouterr()
    answer = client.get("/echo/alex?value=hello&token=s3cret&email=alex%40example.com",
                        headers={"X-Request-ID": "lb-7f3a.2:x_y"})
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "lb-7f3a.2:x_y"
    lines = json_lines(capsys.readouterr().err)
    assert [line["logger"] for line in lines] == ["portal.echo", "portal.access"]
    assert {line["request_id"] for line in lines} == {"lb-7f3a.2:x_y"}
    assert lines[0]["message"] == "got hello" and lines[0]["level"] == "WARNING"
    access = lines[1]
    assert {key: access[key] for key in ("method", "route", "status")} == {
        "method": "GET", "route": "/echo/<name>", "status": 200}
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert access["time"].endswith("Z")
    # The route template, not the path: the name in it, the query, the token stay out.
    text = json.dumps(access)
    assert "alex" not in text and "s3cret" not in text and "example.com" not in text


@pytest.mark.parametrize("offered", [
    "a" * 65, "has space", 'quote"}{', "new\u2028line", "", "-starts-with-dash", "tab\there"])
def test_an_unsafe_request_id_is_replaced_by_a_new_one(
        app: Flask, capsys: pytest.CaptureFixture[str], offered: str) -> None:
    answer = app.test_client().get("/healthz", headers={"X-Request-ID": offered})
    given = answer.headers["X-Request-ID"]
    assert given != offered and len(given) == 32 and given.isalnum()
    assert access_lines(capsys.readouterr().err)[-1]["request_id"] == given


def test_requests_without_an_id_get_different_ones(app: Flask) -> None:
    client = app.test_client()
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_a_hostile_value_stays_inside_its_field(
        echo_app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    client = echo_app.test_client()
    capsys.readouterr()
    client.get("/echo/x", query_string={"value": HOSTILE})
    client.get("/nowhere" + HOSTILE.replace("\r", "%0D").replace("\n", "%0A"))
    err = capsys.readouterr().err
    lines = json_lines(err)  # every line is one whole JSON object
    assert len(err.splitlines()) == len(lines) == 3
    assert [line["logger"] for line in lines] == ["portal.echo", "portal.access",
                                                  "portal.access"]
    assert lines[0]["message"] == "got " + HOSTILE
    assert lines[2]["route"] == "/nowhere" + HOSTILE and lines[2]["status"] == 404
    assert not any(line.get("message") == "forged" for line in lines)


def test_the_text_format_writes_line_breaks_as_escapes(
        settings: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "text"))
    app = create_app({**settings, "LOG_FORMAT": "text"})

    @app.get("/echo")
    def echo() -> str:
        logging.getLogger("portal.echo").warning("got %s", request.args["value"])
        return "ok"

    capsys.readouterr()
    answer = app.test_client().get("/echo", query_string={"value": HOSTILE},
                                   headers={"X-Request-ID": "text-1"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "WARNING portal.echo [text-1] got evil\\r\\n{" in lines[0]
    assert "INFO portal.access [text-1] request method=GET route=/echo status=200" in lines[1]
    assert answer.headers["X-Request-ID"] == "text-1"


def test_json_is_the_default_and_text_the_demo_default(
        settings: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal.observability.logs import log_format

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "formats"))
    assert log_format(create_app(settings)) == "json"
    assert log_format(create_app({**settings, "LOG_FORMAT": "text"})) == "text"
    demo = {"DATABASE_URL": settings["DATABASE_URL"], "DEMO": True}
    assert log_format(create_app(demo)) == "text"
    assert log_format(create_app({**demo, "LOG_FORMAT": "json"})) == "json"
    with pytest.raises(ConfigError, match="PORTAL_LOG_FORMAT"):
        create_app({**settings, "LOG_FORMAT": "xml"})
