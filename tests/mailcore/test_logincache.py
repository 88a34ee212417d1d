"""Password checks: the store's shared login cache (a real SQLite file, two handles as two
processes hold it), argon2id off the event loop, one argon2id run for concurrent checks of
the same credentials, and a changed hash never admitted by a cached check."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from mailcore import passwords
from mailcore.logincache import FILE_NAME, SharedLoginCache
from mailcore.passwords import PasswordChecker, hash_password

ALICE = "alice@example.com"
PASSWORD = "correct horse battery"
BLOCKED = 30.0  # seconds a test thread waits for the event loop (only a failure waits)


def argon2_runs() -> float:
    return REGISTRY.get_sample_value("postern_password_checks_total", {"answer": "argon2"}) or 0.0


@pytest.fixture
def store_cache(tmp_path: Path) -> Iterator[SharedLoginCache]:
    cache = SharedLoginCache.create(tmp_path)
    yield cache
    cache.close()


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password(PASSWORD)


def test_the_file_is_the_store_users_alone_and_holds_no_password(
    tmp_path: Path, store_cache: SharedLoginCache
) -> None:
    entry = store_cache.entry(ALICE, "$argon2id$hash", PASSWORD)
    store_cache.add(entry, ALICE)
    for path in tmp_path.glob(FILE_NAME + "*"):  # the -wal and -shm files too
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert PASSWORD.encode() not in path.read_bytes()
        assert ALICE.encode() not in path.read_bytes()


def test_rows_are_proofs_under_the_key(tmp_path: Path, store_cache: SharedLoginCache) -> None:
    worker = SharedLoginCache.attach(tmp_path, store_cache.key)
    stranger = SharedLoginCache.attach(tmp_path, bytes(32))
    try:
        entry = store_cache.entry(ALICE, "$argon2id$one", PASSWORD)
        store_cache.add(entry, ALICE)
        assert worker.contains(worker.entry(ALICE, "$argon2id$one", PASSWORD))
        # another hash, password, user or key: not the same proof
        assert not worker.contains(worker.entry(ALICE, "$argon2id$two", PASSWORD))
        assert not worker.contains(worker.entry(ALICE, "$argon2id$one", PASSWORD + "x"))
        assert not worker.contains(worker.entry("bob@example.com", "$argon2id$one", PASSWORD))
        assert not stranger.contains(stranger.entry(ALICE, "$argon2id$one", PASSWORD))
        # a change of the user deletes its rows, and no one else's
        worker.add(worker.entry("bob@example.com", "$argon2id$b", PASSWORD), "bob@example.com")
        worker.forget(ALICE)
        assert not store_cache.contains(entry)
        assert store_cache.rows() == 1
    finally:
        worker.close()
        stranger.close()


def test_a_new_start_begins_empty_under_a_new_key(tmp_path: Path) -> None:
    first = SharedLoginCache.create(tmp_path)
    first.add(first.entry(ALICE, "$argon2id$one", PASSWORD), ALICE)
    first.close()
    second = SharedLoginCache.create(tmp_path)
    try:
        assert second.rows() == 0
        assert second.key != first.key
    finally:
        second.close()
    with pytest.raises(FileNotFoundError):
        SharedLoginCache.attach(tmp_path / "elsewhere", second.key)


async def test_a_check_in_one_process_is_not_repeated_in_another(
    tmp_path: Path, store_cache: SharedLoginCache, alice_hash: str
) -> None:
    store, worker = PasswordChecker(), PasswordChecker()
    store.shared = store_cache
    worker.shared = SharedLoginCache.attach(tmp_path, store_cache.key)
    try:
        before = argon2_runs()
        assert await store.check(ALICE, alice_hash, PASSWORD)
        assert argon2_runs() == before + 1
        assert await worker.check(ALICE, alice_hash, PASSWORD)
        assert await store.check(ALICE, alice_hash, PASSWORD)
        assert argon2_runs() == before + 1
        # a wrong password is never remembered
        assert not await worker.check(ALICE, alice_hash, "wrong horse battery")
        assert not await store.check(ALICE, alice_hash, "wrong horse battery")
        assert argon2_runs() == before + 3
        # the hash changed: what was cached admits the old password nowhere
        new_hash = hash_password("battery staple horse")
        store.forget(ALICE)
        assert not await worker.check(ALICE, new_hash, PASSWORD)
        assert await worker.check(ALICE, new_hash, "battery staple horse")
        assert await store.check(ALICE, new_hash, "battery staple horse")
        assert argon2_runs() == before + 5
    finally:
        worker.shared.close()


async def test_concurrent_checks_of_the_same_credentials_share_one_run(alice_hash: str) -> None:
    checker = PasswordChecker()
    before = argon2_runs()
    results = await asyncio.gather(*(checker.check(ALICE, alice_hash, PASSWORD) for _ in range(8)))
    assert results == [True] * 8
    assert argon2_runs() == before + 1


async def test_a_cancelled_login_leaves_the_check_to_the_others(alice_hash: str) -> None:
    checker = PasswordChecker()
    first = asyncio.ensure_future(checker.check(ALICE, alice_hash, PASSWORD))
    second = asyncio.ensure_future(checker.check(ALICE, alice_hash, PASSWORD))
    await asyncio.sleep(0)
    first.cancel()
    assert await second
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_argon2_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, alice_hash: str
) -> None:
    """A verification (and the unknown user's dummy hash) waits for the event loop to set
    an event: on the loop's thread it would wait in vain and fail."""
    loop_ran = threading.Event()

    def waits_for_the_loop(*args: object) -> bool:
        assert loop_ran.wait(BLOCKED), "argon2id ran on the event loop's thread"
        return True

    monkeypatch.setattr(passwords, "verify_password", waits_for_the_loop)
    monkeypatch.setattr(passwords, "dummy_hash", lambda: str(waits_for_the_loop()))
    checker = PasswordChecker()
    for check in (checker.check(ALICE, alice_hash, PASSWORD), checker.check_unknown(PASSWORD)):
        loop_ran.clear()
        task = asyncio.ensure_future(check)
        await asyncio.sleep(0.01)
        loop_ran.set()
        await task


def test_a_broken_file_is_a_miss(tmp_path: Path, store_cache: SharedLoginCache) -> None:
    worker = SharedLoginCache.attach(tmp_path, store_cache.key)
    worker.close()
    entry = worker.entry(ALICE, "$argon2id$one", PASSWORD)
    worker.add(entry, ALICE)  # logged, not raised
    assert not worker.contains(entry)
    worker.forget(ALICE)
    with pytest.raises(sqlite3.ProgrammingError):
        worker.rows()
