"""The apply_batch wire form: records and bodies round-trip; chunks fit NATS payloads."""

from __future__ import annotations

import pytest

from mailcore.bus import replica_batch
from mailcore.bus.replica_batch import BatchEntry
from mailcore.mailstore.threads import GROUP_MAX


def entry(n: int, size: int) -> BatchEntry:
    return BatchEntry("acct", [n, "append"], "inline" if size else "none", "store-a", b"x" * size)


def test_round_trip_keeps_order_bodies_and_origins() -> None:
    entries = [entry(1, 10), entry(2, 0), BatchEntry("b", [3], "object:b.7", None), entry(4, 3)]
    assert replica_batch.decode(replica_batch.encode(entries)) == entries


def test_a_body_shorter_than_its_index_says_is_refused() -> None:
    payload = replica_batch.encode([entry(1, 10)])
    with pytest.raises(ValueError, match="index says 10"):
        replica_batch.decode(payload[:-1])


def test_chunks_keep_order_and_stay_under_the_payload_limit() -> None:
    entries = [entry(i, 200 * 1024) for i in range(7)] + [entry(7 + i, 0) for i in range(600)]
    chunks = replica_batch.chunks(entries)
    assert [e for c in chunks for e in c] == entries
    for c in chunks:
        assert len(replica_batch.encode(c)) <= replica_batch.MAX_BYTES
        assert len(c) <= replica_batch.MAX_RECORDS
    assert len(chunks[0]) == 3  # three 200 KiB bodies fit, a fourth does not


def test_a_body_of_the_inline_maximum_travels_alone() -> None:
    big = entry(1, 512 * 1024)
    assert replica_batch.chunks([entry(0, 300 * 1024), big, entry(2, 1)]) == [
        [entry(0, 300 * 1024)],
        [big, entry(2, 1)],
    ]


def test_a_chunk_cut_short_ends_on_a_whole_writer_group() -> None:
    # 10 KiB bodies: 73 fit the byte limit; 64 go (one commit by the store's writer,
    # mailcore/mailstore/threads.py), the other 9 lead the next chunk
    entries = [entry(i, 10 * 1024) for i in range(300)]
    chunks = replica_batch.chunks(entries)
    assert [e for c in chunks for e in c] == entries
    assert [len(c) for c in chunks] == [64, 64, 64, 64, 44]
    assert replica_batch.GROUP == GROUP_MAX


def test_a_chunk_under_one_group_is_not_cut() -> None:
    entries = [entry(i, 100 * 1024) for i in range(10)]  # 7 fit, fewer than one group
    assert [len(c) for c in replica_batch.chunks(entries)] == [7, 3]
