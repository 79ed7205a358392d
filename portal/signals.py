"""The portal's domain events: a lower package sends one, the higher packages that care subscribe.

Packages form one-way layers (docs/architecture.md). When a change in a lower package must move
a higher one ("notice published", "consent withdrawn", "person erased"), the lower one sends a
signal named here and never imports the higher one; the higher one connects a receiver in its
``init_app`` (or at import of its ``service`` module). Receivers run inside the sender's unit of
work: they flush, never commit, and an exception in one undoes the whole change, as it should
(an audit entry or an erasure that failed must not leave the change it belongs to in place).
Work that must wait for the commit (mail, webhooks, the shred journal) is queued with
``portal.db.after_commit``.

Each signal says who sends it and what the keyword arguments are.
"""

from __future__ import annotations

from blinker import Namespace

_portal = Namespace()

#: Sent by ``portal.catalog`` (``publish_notice``) once a new notice version is saved (flushed),
#: in the same transaction. Sender: the new ``NoticeVersion``. Keyword arguments: ``ending``, a
#: mapping of category key to why the consents given for it must end (a material change, or
#: "removed from the catalog"); ``actor``, the publishing ``Person``, or ``None`` from the
#: command line. A receiver may return a mapping of category key to how many consents it ended;
#: the publisher adds them up and reports them (``Publication.consents_ended``).
notice_published = _portal.signal("notice-published")

#: Sent by portal.consent.service when a change ends a consent under which the category was
#: being collected (withdrawn, refused, or expired after a material notice change), in the
#: unit of work that appends the ledger event. Sender: that ``ConsentEvent``; no keyword
#: arguments. portal.api.webhooks queues a stop notice to the category's collectors.
collection_stopped = _portal.signal("collection-stopped")

#: Sent by ``portal.vault.keys.rotate_master_key`` once it has re-wrapped the vault's data keys,
#: in the same unit of work (with their row locks held). Sender: ``None``. Keyword arguments:
#: ``current`` and ``new``, the two ``MasterKey`` objects. A receiver re-wraps the keys it keeps
#: under the master key (portal.training: each snapshot's key) and returns a mapping of what it
#: re-wrapped to how many, which the rotation reports.
master_key_rotating = _portal.signal("master-key-rotating")
#: Sent by ``portal.catalog.objections.file_objection`` once the objection is saved (flushed),
#: in the same unit of work. Sender: the new ``Objection``; no keyword arguments.
#: portal.training marks the snapshots holding that person's records of the category outdated.
objection_filed = _portal.signal("objection-filed")

#: Sent by ``portal.vault.erasure`` when a person's collected records are erased: their batches
#: deleted (a deletion request, the retention purge) or their data key destroyed. Sender: the
#: string ``"portal.vault"``. Keyword arguments: ``person_ids``, a tuple of person ids;
#: ``category_key``, the category erased (``None``: every category); ``since``/``until``, the
#: period of collection erased (``None``: open on that side). portal.training marks the
#: snapshots holding those records outdated.
records_erased = _portal.signal("records-erased")
