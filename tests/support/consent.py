"""Consent choices posted as the controls' forms do."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.support.forms import csrf_token

CONSENT_KEYS = ("pointer", "clicks", "keystrokes", "ai_transcripts", "conversations")


class Chooser:
    """Post consent choices as the controls' forms do."""

    def __init__(self, client: FlaskClient, version: int = 1) -> None:
        self.client = client
        self.version = version
        self.token = csrf_token(client, "/consent/history")

    def post(self, key: str, action: str, *, version: int | None = None, next_path: str = "",
             json: bool = False) -> Any:
        headers = {"Accept": "application/json"} if json else {}
        return self.client.post(f"/consent/{key}/{action}", headers=headers, data={
            "csrf_token": self.token, "notice_version": str(version or self.version),
            "next": next_path})

    def withdraw_all(self, next_path: str = "") -> Any:
        return self.client.post("/consent/withdraw-all",
                                data={"csrf_token": self.token, "next": next_path})
