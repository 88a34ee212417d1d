"""The wire form of ``postern.replica.apply_batch``: several peer records, one request.

The mirror's sink applies the peer's records through its store (services/store/
replica_rpc.py). One request and one store transaction per record made catch-up as slow
as the disk's fsync (bench W6: about 30 records/s on the shared machine); a batch lets the
store group-commit the records it applies in one transaction (mailcore/mailstore
threads: group commit) and saves the round trips.

Request payload: one JSON line, the index (per record: account, journal row, body
kind — ``inline``, ``object:<name>`` or ``none`` — origin, the byte length of its
inline body, the split-brain part — ``resolver``/``defer``/null — and the Trash
flag), then the inline bodies back to back in index order. The reply is JSON:
``{"results": [...]}``, one per record, in order — ``{"applied": bool}``,
``{"conflict": text, "mailbox_id", "uid"}`` or ``{"error": text}`` (the record and every
later one must be delivered again; earlier ones are committed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mailcore.mailstore.threads import GROUP_MAX

# What one request may carry: NATS refuses payloads above max_payload (1 MiB by default,
# mailcore/bus/setup.py); inline bodies are at most 512 KiB, so one always fits alone.
MAX_BYTES = 768 * 1024
MAX_RECORDS = 256
# The store's writer commits at most GROUP_MAX writes together (mailcore/mailstore/
# threads.py): a request of 73 records was two commits, one of 64 and one of 9 (and a
# group under 16 files syncs them one by one, files.py). A request cut short by a limit
# ends on a whole number of groups; the rest goes first in the next one.
GROUP = GROUP_MAX


@dataclass(frozen=True, slots=True)
class BatchEntry:
    account: str
    row: list[Any]  # the journal record, journal.encode() form
    body: str  # "inline", "object:<name>" or "none"
    origin: str | None
    data: bytes = b""
    # split brain (mailcore/mailstore/splitbrain.py): "resolver" or "defer"; None: plain apply
    resolve: str | None = None
    trash: bool = False  # a peer's expunge kept in Trash here (mirrortrash.py)


def encode(entries: list[BatchEntry]) -> bytes:
    index = [[e.account, e.row, e.body, e.origin, len(e.data), e.resolve, e.trash] for e in entries]
    return json.dumps(index).encode() + b"\n" + b"".join(e.data for e in entries)


def decode(payload: bytes) -> list[BatchEntry]:
    head, _, rest = payload.partition(b"\n")
    out: list[BatchEntry] = []
    at = 0
    for account, row, body, origin, length, resolve, trash in json.loads(head):
        data = rest[at : at + length]
        out.append(BatchEntry(str(account), list(row), str(body), origin, data, resolve, trash))
        at += int(length)
    if at != len(rest):
        raise ValueError(f"batch bodies: {len(rest)} bytes, index says {at}")
    return out


def chunks(entries: list[BatchEntry]) -> list[list[BatchEntry]]:
    """Consecutive runs of ``entries`` that each fit one request; a run that stops before
    the end holds a whole number of the writer's groups when it holds more than one."""
    out: list[list[BatchEntry]] = []
    start = 0
    while start < len(entries):
        end, size = start, 0
        while end < len(entries) and end - start < MAX_RECORDS:
            cost = len(entries[end].data) + 512  # the index line's share, generously
            if end > start and size + cost > MAX_BYTES:
                break
            size += cost
            end += 1
        if end < len(entries) and end - start > GROUP:
            end = start + (end - start) // GROUP * GROUP
        out.append(entries[start:end])
        start = end
    return out


__all__ = ["GROUP", "MAX_BYTES", "MAX_RECORDS", "BatchEntry", "chunks", "decode", "encode"]
