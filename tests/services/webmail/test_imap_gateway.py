"""The IMAP gateway against the real store: folders with counts, sorted pages (by the
store's SORT when offered, client-side otherwise), flags, move, append, search, IDLE."""

from __future__ import annotations

import asyncio

import pytest

from services.webmail.imap_gateway import ROUND_TRIPS, ImapClient, ImapError, Upstream
from services.webmail.pool import ImapPool
from tests.services.store.imap.conftest import ALICE, PASSWORD, ImapHarness, message


async def _client(h: ImapHarness, password: str = PASSWORD) -> ImapClient:
    return await ImapClient.connect(
        Upstream("127.0.0.1", h.port), ALICE, password, client_ip="203.0.113.5"
    )


async def test_login_refused_with_wrong_password(imap: ImapHarness) -> None:
    with pytest.raises(ImapError) as info:
        await _client(imap, "wrong")
    assert info.value.auth


async def test_folders_pages_and_sorting(imap: ImapHarness) -> None:
    await imap.deliver(
        message(1, subject="banana"), message(2, subject="apple"), message(3, subject="cherry")
    )
    c = await _client(imap)
    try:
        folders = await c.folders()
        inbox = next(f for f in folders if f.name == "INBOX")
        assert (inbox.messages, inbox.unseen) == (3, 3)
        for server_sort in (True, False):
            if not server_sort:
                c.capabilities = c.capabilities - {"SORT"}
            elif not c.has("SORT"):
                continue
            page = await c.page("INBOX", sort="subject", reverse=False, per_page=2)
            assert [r.subject for r in page.rows] == ["apple", "banana"]
            assert (page.total, page.pages) == (3, 2)
            page2 = await c.page("INBOX", sort="subject", reverse=False, per_page=2, page=2)
            assert [r.subject for r in page2.rows] == ["cherry"]
            by_date = await c.page("INBOX", sort="date", reverse=True)
            assert [r.subject for r in by_date.rows] == ["cherry", "apple", "banana"]
            assert by_date.rows[0].sender == "Sender"
    finally:
        await c.close()


async def test_flags_move_append_search(imap: ImapHarness) -> None:
    uids = await imap.deliver(message(1, subject="hello world"), message(2, subject="other"))
    c = await _client(imap)
    try:
        await c.set_flag("INBOX", [uids[0]], "\\Seen", True)
        await c.set_flag("INBOX", [uids[0]], "\\Flagged", True)
        rows = await c.rows("INBOX", uids)
        assert rows[0].seen and rows[0].flagged and not rows[1].seen
        found = await c.page("INBOX", query="hello")
        assert [r.uid for r in found.rows] == [uids[0]]
        await c.create("Archive/2024")
        await c.move("INBOX", [uids[1]], "Archive/2024")
        assert [r.subject for r in (await c.page("Archive/2024")).rows] == ["other"]
        await c.append("INBOX", message(9, subject="appended"), "(\\Seen)")
        subjects = [r.subject for r in (await c.page("INBOX")).rows]
        assert sorted(subjects) == ["appended", "hello world"]
        raw = await c.message("INBOX", uids[0])
        assert raw is not None and b"Subject: hello world" in raw
        await c.rename("Archive/2024", "Old")
        assert "Old" in [f.name for f in await c.folders()]
        await c.delete("Old")
        assert "Old" not in [f.name for f in await c.folders()]
    finally:
        await c.close()


async def test_round_trips_are_counted(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    c = await _client(imap)
    try:
        counter = [0]
        token = ROUND_TRIPS.set(counter)
        await c.page("INBOX")  # by arrival: SELECT, UID SEARCH, UID FETCH
        assert counter[0] == 3
        await c.page("INBOX", sort="subject")
        ROUND_TRIPS.reset(token)
        # UID SORT, UID FETCH; without SORT: UID SEARCH, a header FETCH of all, UID FETCH
        assert counter[0] == 3 + (2 if c.has("SORT") else 3)
    finally:
        await c.close()


async def test_idle_reports_new_mail(imap: ImapHarness) -> None:
    c = await _client(imap)
    try:
        waiting = asyncio.create_task(c.wait_for_change("INBOX", timeout=60))
        await asyncio.sleep(0.2)
        await imap.deliver(message(5))
        assert await asyncio.wait_for(waiting, 30)
    finally:
        await c.close()


async def test_changed_since_tells_what_a_rendered_page_missed(imap: ImapHarness) -> None:
    uids = await imap.deliver(message(1), message(2))
    c = await _client(imap)
    try:
        page = await c.page("INBOX")
        assert (page.last_uid, page.messages) == (max(uids), 2)
    finally:
        await c.close()
    fresh = await _client(imap)
    try:
        assert not await fresh.changed_since("INBOX", page.last_uid, page.messages)
    finally:
        await fresh.close()
    [new] = await imap.deliver(message(3))
    fresh = await _client(imap)
    try:  # a new message after the render
        assert await fresh.changed_since("INBOX", page.last_uid, page.messages)
        assert not await fresh.changed_since("INBOX", new, 3)
    finally:
        await fresh.close()
    fresh = await _client(imap)
    try:  # one fewer than the page showed (expunged elsewhere)
        assert await fresh.changed_since("INBOX", new, 4)
    finally:
        await fresh.close()


async def test_pooled_connection_sees_mail_that_arrived_while_idle(imap: ImapHarness) -> None:
    pool = ImapPool(Upstream("127.0.0.1", imap.port), idle_timeout=60)
    try:
        async with pool.connection(ALICE, PASSWORD, None) as c:
            assert (await c.page("INBOX")).total == 0
        [uid] = await imap.deliver(message(1, subject="while idle"))
        async with pool.connection(ALICE, PASSWORD, None) as again:
            assert again is c  # the same login, reused
            # UID FETCH first: it resolves UIDs in the session's view of the folder
            assert await again.message("INBOX", uid) is not None
            assert [r.subject for r in (await again.page("INBOX")).rows] == ["while idle"]
        assert pool.idle_count == 1
        await pool.reap()
        assert pool.idle_count == 1  # not idle long enough
        pool.idle_timeout = 0.0
        await pool.reap()
        assert pool.idle_count == 0
    finally:
        await pool.close()


async def test_pool_keys_by_password(imap: ImapHarness) -> None:
    pool = ImapPool(Upstream("127.0.0.1", imap.port), idle_timeout=60)
    try:
        async with pool.connection(ALICE, PASSWORD, None) as c:
            pass
        with pytest.raises(ImapError):
            async with pool.connection(ALICE, "not the password", None) as other:
                assert other is not c
        await pool.drop_user(ALICE)
        assert pool.idle_count == 0
    finally:
        await pool.close()


async def test_folder_counts_in_one_list_or_by_status(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2))
    c = await _client(imap)
    try:
        await c.create("Projects")
        results = []
        for list_status in (True, False):
            if not list_status:
                c.capabilities = c.capabilities - {"LIST-STATUS"}
            elif not c.has("LIST-STATUS"):
                continue
            counter = [0]
            token = ROUND_TRIPS.set(counter)
            folders = await c.folders()
            ROUND_TRIPS.reset(token)
            results.append({f.name: (f.messages, f.unseen) for f in folders})
            # LIST-STATUS: one LIST; without: LIST and a STATUS per folder
            assert counter[0] == (1 if list_status else 1 + len(folders))
        assert all(r == results[0] for r in results)
        assert results[0]["INBOX"] == (2, 2) and results[0]["Projects"] == (0, 0)
        assert next(f for f in folders if f.name == "Sent").special == "\\Sent"
    finally:
        await c.close()


async def test_conversations(imap: ImapHarness) -> None:
    await imap.deliver(
        message(1, subject="plans"),
        message(2, subject="other"),
        message(3, subject="Re: plans"),
        message(4, subject="RE: Fwd: plans"),
    )
    c = await _client(imap)
    try:
        threads, by_server = await c.threads("INBOX")
        if by_server:  # the store's THREAD=REFERENCES (these share no References)
            assert sorted(u for t in threads for u in t) == [1, 2, 3, 4]
        c.capabilities = c.capabilities - {"THREAD=REFERENCES"}
        threads, by_server = await c.threads("INBOX")
        assert not by_server
        assert threads == [[1, 3, 4], [2]]
    finally:
        await c.close()
