"""Logins through the real ``python -m services.store`` with an IMAP worker process
(``POSTERN_IMAP_WORKERS=2``, issue 20): a password checked in one process is not checked
again (argon2id) in the other, which reads the store's shared login cache
(mailcore/logincache.py); a changed password is not admitted by what was cached before.

Every argon2id run logs ``password hash checked`` with its process's pid; the test
counts those lines in the log the two processes share.
"""

from __future__ import annotations

import json
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from mailcore.logincache import FILE_NAME
from mailcore.mailstore import store_root
from tests.services.store.imap.conftest import ALICE, PASSWORD
from tests.services.store.imap.test_process import StoreProcess, store_env
from tests.services.store.test_imap_workers import WAIT, Client, session_in, start_workers
from tests.support.daemons import NatsServer

NEW_PASSWORD = "battery staple horse"
MAX_LOGINS = 50  # logins tried at most until a process has seen a password change


@pytest.fixture
def workers_process(nats_server: NatsServer, tmp_path: Path) -> Iterator[StoreProcess]:
    env = store_env(nats_server.url, tmp_path) | {"POSTERN_IMAP_WORKERS": "2"}
    p = StoreProcess(env, tmp_path / "store.log")
    yield p
    p.stop()


def argon2_runs(log: Path, *, ok: bool) -> Counter[int]:
    """argon2id runs per pid (right passwords when ``ok``, else wrong ones)."""
    runs: Counter[int] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "password hash checked" and event.get("ok") is ok:
            runs[int(event["pid"])] += 1
    return runs


async def login(c: Client, password: str) -> bool:
    c.n += 1
    tag = f"t{c.n}"
    out = await c.line.cmd(f'{tag} LOGIN "{ALICE}" "{password}"'.encode(), timeout=WAIT)
    assert out[-1].startswith((f"{tag} OK".encode(), f"{tag} NO".encode())), out
    return out[-1].startswith(f"{tag} OK".encode())


async def login_once_seen(p: StoreProcess, pids: list[int], pid: int, password: str) -> None:
    """Log in to process ``pid`` with ``password`` as soon as that process has seen it
    (the directory reaches each process through its own watch)."""
    for _ in range(MAX_LOGINS):
        c = await session_in(p, pids, pid)
        try:
            if await login(c, password):
                return
        finally:
            await c.line.close()
    raise AssertionError(f"process {pid} never accepted the password")


async def test_a_password_checked_in_one_process_is_not_checked_again_in_the_other(
    bus: Bus, workers_process: StoreProcess
) -> None:
    directory = await Directory.open(bus.js)
    try:
        await directory.add_domain("example.com")
        await directory.add_user(ALICE, PASSWORD)
        p = workers_process
        main_pid, worker_pid = await start_workers(p)
        pids = [main_pid, worker_pid]
        # the cache file: the store process's own, made afresh, no one else may read it
        cache = store_root(Path(p.env["POSTERN_DATA"])) / FILE_NAME
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        first = await session_in(p, pids, worker_pid)
        second = await session_in(p, pids, main_pid)
        assert await login(first, PASSWORD)
        assert argon2_runs(p.log, ok=True) == {worker_pid: 1}
        # the store process's first login: from the shared cache, no argon2id
        assert await login(second, PASSWORD)
        assert argon2_runs(p.log, ok=True) == {worker_pid: 1}
        assert argon2_runs(p.log, ok=False) == {}
        for path in cache.parent.glob(FILE_NAME + "*"):  # -wal and -shm too
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for c in (first, second):
            await c.line.close()

        # a changed password: the old one is refused in both processes, although both
        # had it cached; the new one costs one argon2id run in all
        await directory.set_password(ALICE, NEW_PASSWORD)
        await login_once_seen(p, pids, main_pid, NEW_PASSWORD)
        assert argon2_runs(p.log, ok=True) == {worker_pid: 1, main_pid: 1}
        await login_once_seen(p, pids, worker_pid, NEW_PASSWORD)
        assert argon2_runs(p.log, ok=True) == {worker_pid: 1, main_pid: 1}
        for pid in pids:
            c = await session_in(p, pids, pid)
            assert not await login(c, PASSWORD)
            await c.line.close()
        assert argon2_runs(p.log, ok=True) == {worker_pid: 1, main_pid: 1}
        assert p.log.read_text().count(PASSWORD) == 0  # no password in the log
    finally:
        await directory.close()
