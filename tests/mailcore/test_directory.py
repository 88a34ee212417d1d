"""The directory on real JetStream KV: records, resolution, authentication, the watch;
password hashes only in CREDENTIALS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from nats.js.errors import KeyNotFoundError

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.credentials import credential_key
from mailcore.directory import (
    AlreadyExists,
    Directory,
    DomainInUse,
    InvalidName,
    NoSuchDomain,
    NoSuchUser,
)


@pytest.fixture
async def directory(bus: Bus) -> AsyncIterator[Directory]:
    d = await Directory.open(bus.js, passwords=True)
    yield d
    await d.close()


async def test_users_domains_aliases(directory: Directory) -> None:
    await directory.add_domain("Example.COM")
    assert directory.is_local_domain("example.com")
    with pytest.raises(AlreadyExists):
        await directory.add_domain("example.com")
    alice = await directory.add_user("Alice@Example.com", "correct horse")
    assert alice.address == "alice@example.com"
    assert directory.user("ALICE@example.com") == alice
    with pytest.raises(NoSuchDomain):
        await directory.add_user("bob@elsewhere.org", "password1")
    with pytest.raises(AlreadyExists):
        await directory.add_user("alice@example.com", "password2")
    with pytest.raises(InvalidName):
        await directory.add_user("carol@example.com", "short")
    with pytest.raises(InvalidName):
        await directory.add_user("not an address", "password3")
    await directory.add_alias("sales@example.com", ["alice@example.com", "x@remote.org"])
    r = directory.resolve("Sales@example.com")
    assert [u.address for u in r.local] == ["alice@example.com"]
    assert r.remote == ["x@remote.org"]
    assert directory.addresses_of(alice) == {"alice@example.com", "sales@example.com"}
    with pytest.raises(DomainInUse):
        await directory.remove_domain("example.com")
    await directory.remove_user("alice@example.com")
    with pytest.raises(NoSuchUser):
        await directory.remove_user("alice@example.com")


async def test_resolution_rules(directory: Directory) -> None:
    await directory.add_domain("example.com")
    await directory.add_user("alice@example.com", "password1")
    await directory.add_user("postmaster@example.com", "password1")
    assert [u.address for u in directory.resolve("alice+news@example.com").local] == [
        "alice@example.com"
    ]
    assert not directory.resolve("nobody@example.com")
    assert not directory.resolve("alice@other.org")
    assert not directory.resolve("<bad")
    # alias loops end; nested aliases expand
    await directory.add_alias("a@example.com", ["b@example.com"])
    await directory.add_alias("b@example.com", ["a@example.com", "alice@example.com"])
    assert [u.address for u in directory.resolve("a@example.com").local] == ["alice@example.com"]
    # catch-all only for otherwise unknown addresses
    await directory.set_catch_all("example.com", "postmaster@example.com")
    assert [u.address for u in directory.resolve("whoever@example.com").local] == [
        "postmaster@example.com"
    ]
    assert [u.address for u in directory.resolve("alice@example.com").local] == [
        "alice@example.com"
    ]


async def test_authentication(directory: Directory) -> None:
    await directory.add_domain("example.com")
    await directory.add_user("alice@example.com", "correct horse")
    assert (await directory.authenticate("alice@example.com", "correct horse")) is not None
    assert (await directory.authenticate("ALICE@example.com", "correct horse")) is not None
    assert await directory.authenticate("alice@example.com", "wrong horse") is None
    assert await directory.authenticate("ghost@example.com", "correct horse") is None
    await directory.set_password("alice@example.com", "battery staple")
    assert await directory.authenticate("alice@example.com", "correct horse") is None
    assert await directory.authenticate("alice@example.com", "battery staple") is not None


async def test_other_nodes_see_changes_through_the_watch(bus: Bus, directory: Directory) -> None:
    other = await Directory.open(bus.js, passwords=True)
    try:
        await directory.add_domain("example.com")
        user = await directory.add_user("alice@example.com", "password1")
        for _ in range(100):
            if other.user("alice@example.com") is not None:
                break
            await asyncio.sleep(0.02)
        assert other.user("alice@example.com") == user
        assert other.user_by_account(user.account_id) == user
        # the hash comes through the other bucket's watch, just after the record
        for _ in range(100):
            if await other.authenticate("alice@example.com", "password1") is not None:
                break
            await asyncio.sleep(0.02)
        assert (await other.authenticate("alice@example.com", "password1")) is not None
        # a password changed on one node: the other's cached login ends with the old hash
        await directory.set_password("alice@example.com", "password2")
        for _ in range(100):
            if await other.authenticate("alice@example.com", "password1") is None:
                break
            await asyncio.sleep(0.02)
        assert await other.authenticate("alice@example.com", "password1") is None
        assert (await other.authenticate("alice@example.com", "password2")) is not None
        await directory.remove_user("alice@example.com")
        for _ in range(100):
            if other.user("alice@example.com") is None:
                break
            await asyncio.sleep(0.02)
        assert other.user("alice@example.com") is None
        assert await other.authenticate("alice@example.com", "password2") is None
        # a node that starts later loads everything
        late = await Directory.open(bus.js, watch=False)
        assert late.is_local_domain("example.com")
    finally:
        await other.close()


async def test_quota_values(directory: Directory) -> None:
    await directory.add_domain("example.com")
    await directory.add_user("q@example.com", "password1", quota_bytes=1000, quota_messages=5)
    u = await directory.set_quota("q@example.com", quota_bytes=0, quota_messages=10)
    assert (u.quota_bytes, u.quota_messages) == (0, 10)
    with pytest.raises(InvalidName):
        await directory.set_quota("q@example.com", quota_bytes=-1, quota_messages=0)


async def test_hashes_are_not_in_the_directory(bus: Bus, directory: Directory) -> None:
    """What a filter may read (DIRECTORY) holds no hash; CREDENTIALS does, and a directory
    opened without it (a filter's) cannot check a password."""
    await directory.add_domain("example.com")
    await directory.add_user("alice@example.com", "correct horse")
    await directory.set_password("alice@example.com", "battery staple")
    raw = await bus.js.key_value(names.KV_DIRECTORY)
    for key in await raw.keys():
        value = (await raw.get(key)).value or b""
        assert b"argon2" not in value, key
        if key.startswith("user."):
            assert json.loads(value)["password_hash"] == ""
    creds = await bus.js.key_value(names.KV_CREDENTIALS)
    stored = json.loads((await creds.get(credential_key("alice@example.com"))).value or b"")
    assert stored["v"] == 1 and stored["hash"].startswith("$argon2id$")
    reader = await Directory.open(bus.js, watch=False)
    assert reader.user("alice@example.com") is not None
    with pytest.raises(RuntimeError):
        await reader.authenticate("alice@example.com", "battery staple")
    await directory.remove_user("alice@example.com")
    with pytest.raises(KeyNotFoundError):
        await creds.get(credential_key("alice@example.com"))
