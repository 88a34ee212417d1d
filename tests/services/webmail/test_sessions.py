"""Session records on the real SESSIONS bucket: sealing, expiry, ending everywhere."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from mailcore.bus import names
from mailcore.bus.connect import Bus
from services.webmail.sessions import SessionKeyError, SessionStore, load_key

KEY = b"s" * 32


async def store(bus: Bus, **kw: float) -> SessionStore:
    kv = await bus.js.key_value(names.KV_SESSIONS)
    return SessionStore(kv, KEY, idle_timeout=kw.get("idle", 60), max_age=kw.get("age", 600))


async def test_sealed_password_bound_to_the_session(bus: Bus) -> None:
    s = await store(bus)
    a = await s.create("alice@example.com", "pw one", "203.0.113.1")
    b = await s.create("alice@example.com", "pw two", "203.0.113.1")
    assert "pw one" not in a.sealed
    got = await s.get(a.sid)
    assert got is not None and s.unseal(got) == "pw one"
    b.sealed = a.sealed  # moved to another record: refused
    with pytest.raises(InvalidTag):
        s.unseal(b)


async def test_expiry_and_everywhere(bus: Bus) -> None:
    s = await store(bus, idle=60)
    a = await s.create("alice@example.com", "pw", "")
    other = await s.create("alice@example.com", "pw", "")
    bob = await s.create("bob@example.com", "pw", "")
    a.seen = time.time() - 120
    await s._put(a)
    assert await s.get(a.sid) is None  # idle too long
    await s.end_everywhere("ALICE@example.com")
    assert await s.get(other.sid) is None
    assert await s.get(bob.sid) is not None
    fresh = await s.create("alice@example.com", "pw", "")
    assert await s.get(fresh.sid) is not None
    assert await s.get("../../etc") is None


def test_key_loading(tmp_path: Path) -> None:
    made = load_key(None, tmp_path)
    assert len(made) == 32 and load_key(None, tmp_path) == made
    assert (tmp_path / "webmail" / "session.key").stat().st_mode & 0o777 == 0o600
    assert load_key(base64.urlsafe_b64encode(KEY).decode(), tmp_path) == KEY
    with pytest.raises(SessionKeyError):
        load_key(base64.urlsafe_b64encode(b"short").decode(), tmp_path)
