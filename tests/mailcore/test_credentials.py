"""Moving password hashes out of the directory (an upgrade), on real JetStream KV: a
directory written before CREDENTIALS keeps every login working before, during and after
the move, and afterwards the directory holds no hash."""

from __future__ import annotations

import asyncio
import json
import time

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.bus.setup import declare_all
from mailcore.credentials import (
    credential_key,
    decode_credential,
    encode_credential,
    move_legacy_hashes,
)
from mailcore.directory import Directory
from mailcore.directory_records import record_key
from mailcore.passwords import hash_password
from tests.conftest import TEST_LIMITS


async def legacy_user(bus: Bus, address: str, password: str) -> None:
    """A user record the way Postern wrote it before CREDENTIALS: the hash inside."""
    record = {
        "address": address,
        "account_id": "acct-" + address.split("@", maxsplit=1)[0],
        "password_hash": hash_password(password),
        "quota_bytes": 0,
        "quota_messages": 0,
        "disabled": False,
        "created": time.time(),
        "v": 1,
    }
    kv = await bus.js.key_value(names.KV_DIRECTORY)
    await kv.put(record_key("user", address), json.dumps(record, separators=(",", ":")).encode())


async def test_legacy_hashes_move_and_logins_keep_working(bus: Bus) -> None:
    setup = await Directory.open(bus.js, watch=False)
    await setup.add_domain("old.test")
    await legacy_user(bus, "ann@old.test", "ann-password")
    await legacy_user(bus, "ben@old.test", "ben-password")
    store = await Directory.open(bus.js, passwords=True)
    try:
        # not moved yet: the store checks the hash it finds in the record
        assert (await store.authenticate("ann@old.test", "ann-password")) is not None
        assert await store.authenticate("ann@old.test", "wrong-password") is None
        assert await move_legacy_hashes(bus.js) == 2
        directory = await bus.js.key_value(names.KV_DIRECTORY)
        for who in ("ann", "ben"):
            record = json.loads((await directory.get(record_key("user", f"{who}@old.test"))).value)
            assert record["password_hash"] == ""
            assert record["account_id"] == f"acct-{who}"  # nothing else changed
        assert await move_legacy_hashes(bus.js) == 0  # idempotent
        fresh = await Directory.open(bus.js, passwords=True)
        try:
            assert (await fresh.authenticate("ben@old.test", "ben-password")) is not None
            assert await fresh.authenticate("ben@old.test", "ann-password") is None
        finally:
            await fresh.close()
        # the store that was running all along: the record lost its hash, the credential
        # came through the watch
        for _ in range(200):
            if store.user("ann@old.test").password_hash == "":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        assert store.user("ann@old.test").password_hash == ""  # type: ignore[union-attr]
        assert (await store.authenticate("ann@old.test", "ann-password")) is not None
    finally:
        await store.close()


async def test_a_newer_credential_is_kept_and_declare_moves(bus: Bus) -> None:
    """A password set after the record was written (``mailctl user passwd`` on an
    upgraded system) wins over the record's older hash; declaring the streams (what
    ``mailctl up`` and compose's nats container do at start) runs the move."""
    setup = await Directory.open(bus.js, watch=False)
    await setup.add_domain("old.test")
    await legacy_user(bus, "cat@old.test", "old-password")
    await setup.reload()
    await setup.set_password("cat@old.test", "new-password")
    await legacy_user(bus, "dan@old.test", "dan-password")
    await declare_all(bus.js, TEST_LIMITS)
    creds = await bus.js.key_value(names.KV_CREDENTIALS)
    directory = await bus.js.key_value(names.KV_DIRECTORY)
    for who in ("cat", "dan"):
        value = (await directory.get(record_key("user", f"{who}@old.test"))).value or b""
        assert b"argon2" not in value
        assert (await creds.get(credential_key(f"{who}@old.test"))).value
    store = await Directory.open(bus.js, passwords=True)
    try:
        assert (await store.authenticate("cat@old.test", "new-password")) is not None
        assert await store.authenticate("cat@old.test", "old-password") is None
        assert (await store.authenticate("dan@old.test", "dan-password")) is not None
    finally:
        await store.close()


def test_credential_values() -> None:
    golden = b'{"v":1,"hash":"$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}'
    assert encode_credential("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA") == golden
    assert decode_credential("user.x", golden) == "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
    assert decode_credential("user.x", b'{"v":2,"hash":"h"}') is None
    assert decode_credential("user.x", b"not json") is None
    assert decode_credential("user.x", b'{"v":1}') is None
    assert decode_credential("user.x", b"[1]") is None
