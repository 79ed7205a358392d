"""The vault: envelope encryption, per-person data keys, collected batches."""
