"""The vault: envelope encryption, per-person data keys, collected batches.

Its modules, by what they do:

- ``checks``: the batch rules and the category's event format a batch must meet.
- ``ingest``: storing a batch, consent-gated, once per idempotency key.
- ``reading``: one's own batches decrypted; what is held, as metadata, for everyone else.
- ``keys``: the master key, the data keys it wraps, master-key rotation.
- ``erasure``: shredding keys, deleting batches, the retention purge, proving a deletion.
- ``errors``: what the vault refuses, and why.
- ``crypto``, ``validation``, ``journal`` (the shred journal), ``models``, ``demo_data``, ``cli``.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Add ``portal vault`` (rotate-master-key, purge-expired, replay-shreds)."""
    from portal.vault.cli import vault_group

    app.cli.add_command(vault_group)
