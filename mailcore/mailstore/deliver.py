"""Delivery with group commit: one transaction and one sync for a batch of messages to
one account, idempotent by delivery key (writer-thread side)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence

from mailcore import message
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import mailboxes, messages, names, quota, searchdata
from mailcore.mailstore.core import AccountCore
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import NewMessage
from mailcore.mailstore.model import Delivery, DeliveryResult

JUNK_FLAGS = frozenset(("$Junk",))  # keyword most clients use for spam (RFC 5788 registry)


def _existing(conn: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        marks = ",".join("?" * len(part))
        for key, mb, uid in conn.execute(
            f"SELECT key, mailbox_id, uid FROM deliveries WHERE key IN ({marks})",  # noqa: S608
            part,
        ):
            found[key] = (mb, uid)
    return found


def deliver(core: AccountCore, items: Sequence[Delivery], now: float) -> list[DeliveryResult]:
    """Commit every deliverable item; results in the order of ``items``."""
    # Before taking the lock: CRLF line ends (the stored size is the size on the wire),
    # one parse per message for the cache and the search columns.
    datas = [message.to_crlf(d.data) for d in items]
    parsed = [message.parse(data) for data in datas]
    blobs = [message.dumps(p) for p in parsed]
    hashes = [hashlib.sha256(data).digest() for data in datas]
    item_flags = [flagset.normalize(d.flags) for d in items]
    results: list[DeliveryResult | None] = [None] * len(items)
    with core.txn() as t:
        conn = t.conn
        existing = _existing(conn, [d.key for d in items])
        inbox = mailboxes.by_name(conn, names.INBOX)
        assert inbox is not None, "INBOX always exists"
        junk = mailboxes.by_role(conn, "\\Junk") or inbox
        accepted: list[tuple[int, MailboxRow]] = []
        first_of: dict[str, int] = {}
        pending_bytes = pending_messages = 0
        for i, d in enumerate(items):
            if i == 0 or d.quota != items[i - 1].quota:
                quota.note(t, d.quota)
            if d.key in existing:
                mb_id, uid = existing[d.key]
                results[i] = DeliveryResult(d.key, "duplicate", mb_id, uid)
            elif d.key in first_of:
                continue  # same key twice in one batch: resolved after the insert
            elif not quota.fits(
                t.state, d.quota, pending_bytes + len(datas[i]), pending_messages + 1
            ):
                results[i] = DeliveryResult(d.key, "quota", error="quota exceeded")
            else:
                first_of[d.key] = i
                pending_bytes += len(datas[i])
                pending_messages += 1
                accepted.append((i, junk if d.mailbox_role == "junk" else inbox))
        if accepted:
            file_ids = t.write_files([datas[i] for i, _ in accepted])
            conn.executemany(
                "INSERT INTO files VALUES (?, ?, ?)",
                [
                    (fid, len(datas[i]), blobs[i])
                    for fid, (i, _) in zip(file_ids, accepted, strict=True)
                ],
            )
            by_box: dict[int, list[tuple[int, int]]] = {}
            boxes: dict[int, MailboxRow] = {}
            for fid, (i, mb) in zip(file_ids, accepted, strict=True):
                by_box.setdefault(mb.id, []).append((i, fid))
                boxes[mb.id] = mb
            rows = []
            for mb_id, entries in by_box.items():
                new = [
                    NewMessage(
                        fid,
                        item_flags[i],
                        items[i].internal_date,
                        len(datas[i]),
                        searchdata.of(parsed[i], datas[i]),
                        hashes[i],
                        items[i].key,
                    )
                    for i, fid in entries
                ]
                uids = messages.insert(t, boxes[mb_id], new, mailbox_keywords=False)
                for (i, _), uid in zip(entries, uids, strict=True):
                    results[i] = DeliveryResult(items[i].key, "delivered", mb_id, uid)
                    rows.append((items[i].key, mb_id, uid, now))
            conn.executemany("INSERT INTO deliveries VALUES (?, ?, ?, ?)", rows)
    out: list[DeliveryResult] = []
    for i, d in enumerate(items):
        r = results[i]
        if r is None:  # a repeated key within the batch
            first = results[first_of[d.key]]
            assert first is not None
            r = DeliveryResult(d.key, "duplicate", first.mailbox_id, first.uid)
        out.append(r)
    return out
