"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) that keeps what it receives."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.postgres import free_port


@dataclass
class Inbox:
    """What the server received: each message with its envelope recipients."""

    received: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    @property
    def messages(self) -> list[Message]:
        """Every message received, in order."""
        return [message for _recipients, message in self.received]

    def to(self, address: str) -> list[Message]:
        """The messages whose To header is ``address``."""
        return [message for message in self.messages if message["To"] == address]


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """Serve SMTP on a free port of 127.0.0.1 for the block; yield the inbox and the port."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
