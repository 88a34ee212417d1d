"""The directory: domains, users, aliases and quotas, kept in the JetStream KV bucket
``DIRECTORY`` so that filter nodes validate recipients and authenticate while the store
is down (architecture invariant 5).

Every service holds a watched in-memory copy: reads are dictionary look-ups, writes go to
KV and come back through the watch to every node. :class:`Directory` is that copy's life
cycle (the watch), its writes and authentication; the rest lives beside it and is
re-exported here:

* :mod:`mailcore.directory_view`: the in-memory copy, its reads and address resolution;
* :mod:`mailcore.directory_records`: the records, their KV keys and encoding;
* :mod:`mailcore.directory_errors`: the refusals;
* :mod:`mailcore.passwords`: argon2id hashes, checked in threads a few at a time, and the
  cache of successful checks.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mailcore import address as addr
from mailcore.bus import kvwatch, names
from mailcore.bus.schemas import new_message_id
from mailcore.directory_errors import (
    AlreadyExists,
    DirectoryError,
    DomainInUse,
    InvalidName,
    NoSuchAlias,
    NoSuchDomain,
    NoSuchUser,
)
from mailcore.directory_records import (
    RECORD_VERSION,
    Alias,
    Domain,
    User,
    canonical,
    canonical_domain,
    check_quota,
    decode_record,
    decode_records,
    encode_record,
    record_key,
)
from mailcore.directory_view import MAX_ALIAS_DEPTH, DirectoryView, Resolution
from mailcore.logging import get_logger
from mailcore.logincache import SharedLoginCache
from mailcore.passwords import PasswordChecker, check_password, hash_password

__all__ = [
    "MAX_ALIAS_DEPTH",
    "RECORD_VERSION",
    "Alias",
    "AlreadyExists",
    "Directory",
    "DirectoryError",
    "DirectoryView",
    "Domain",
    "DomainInUse",
    "InvalidName",
    "NoSuchAlias",
    "NoSuchDomain",
    "NoSuchUser",
    "Resolution",
    "User",
    "hash_password",
]

log = get_logger("directory")


class Directory(DirectoryView):
    """A watched copy of the DIRECTORY bucket; see the module docstring."""

    def __init__(
        self, js: JetStreamContext, kv: KeyValue, *, verify_concurrency: int | None = None
    ) -> None:
        super().__init__()
        self._js = js
        self._kv = kv
        self._watch_task: asyncio.Task[None] | None = None
        self._watcher: Any = None  # nats-py's KeyWatcher of the running watch
        self._synced = asyncio.Event()
        self._passwords = PasswordChecker(verify_concurrency)

    # --- life cycle ---------------------------------------------------------------------
    @classmethod
    async def open(cls, js: JetStreamContext, *, watch: bool = True) -> Directory:
        """Load the bucket; with ``watch`` keep following it until :meth:`close`."""
        kv = await js.key_value(names.KV_DIRECTORY)
        d = cls(js, kv)
        if watch:
            d._watch_task = asyncio.create_task(d._watch_forever(), name="directory-watch")
            await asyncio.wait_for(d._synced.wait(), 30)
        else:
            await d.reload()
        return d

    async def close(self) -> None:
        """Stop following the bucket: unsubscribe the watch, then end its task."""
        task, self._watch_task = self._watch_task, None
        await self._stop_watch(task)

    async def restart_watch(self) -> None:
        """Follow the bucket afresh (after a NATS reconnect the old watch may be gone)."""
        if self._watch_task is not None:
            await self._stop_watch(self._watch_task)
            self._watch_task = asyncio.create_task(self._watch_forever(), name="directory-watch")

    async def _stop_watch(self, task: asyncio.Task[None] | None) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), 5)
        if task is not None:
            task.cancel()
            # Bounded: on Python 3.11 a cancel can be swallowed inside a library's wait_for.
            await asyncio.wait({task}, timeout=5)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def reload(self) -> None:
        """Read every key once (used without a watch, and by tests)."""
        last = await kvwatch.last_revision(self._js, names.KV_DIRECTORY)
        watcher: Any = await self._kv.watchall()
        try:
            values = await kvwatch.initial_values(watcher, last)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), 5)
        self._replace_all(decode_records(values))

    async def _watch_forever(self) -> None:
        while True:
            try:
                last = await kvwatch.last_revision(self._js, names.KV_DIRECTORY)
                watcher = self._watcher = await self._kv.watchall()
                self._replace_all(decode_records(await kvwatch.initial_values(watcher, last)))
                async for entry in watcher:
                    if entry is None:  # nats-py's marker; see kvwatch for why it is ignored
                        continue
                    self._on_entry(entry.key, entry.value, entry.operation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("directory watch restarting", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)

    def _on_entry(self, key: str, value: bytes | None, op: str | None) -> None:
        decoded = None if op in kvwatch.DELETE_OPERATIONS else decode_record(key, value or b"")
        if decoded:
            self._apply(*decoded)
        else:
            self._forget(key)

    def _replace_all(self, records: dict[str, tuple[str, Any]]) -> None:
        super()._replace_all(records)
        self._synced.set()

    def _user_changed(self, address: str) -> None:
        # A cached login must not outlive the hash it was checked against.
        self._passwords.forget(address)

    # --- authentication -----------------------------------------------------------------
    async def authenticate(self, address: str, password: str) -> User | None:
        """The user when the password is right, else None (same answer for an unknown user)."""
        user = self.user(address)
        if user is None:
            await self._passwords.check_unknown(password)
            return None
        if user.disabled:  # no cache: a quick answer would tell a right password
            await self._passwords.verify(user.password_hash, password, address=user.address)
            return None
        ok = await self._passwords.check(user.address, user.password_hash, password)
        return user if ok else None

    def share_logins(self, cache: SharedLoginCache) -> None:
        """Remember successful checks in ``cache`` too, which the store's other processes
        read (mailcore/logincache.py)."""
        self._passwords.shared = cache

    # --- writes -------------------------------------------------------------------------
    async def _put(self, kind: str, name: str, record: Any, *, create: bool = False) -> None:
        value = encode_record(record)
        key = record_key(kind, name)
        if create:
            try:
                await self._kv.create(key, value)
            except KeyWrongLastSequenceError:
                raise AlreadyExists(f"{kind} {name} already exists") from None
        else:
            await self._kv.put(key, value)
        self._apply(kind, record)

    async def _delete(self, kind: str, name: str) -> None:
        key = record_key(kind, name)
        await self._kv.delete(key)
        self._forget(key)

    async def add_domain(self, name: str, *, catch_all: str | None = None) -> Domain:
        d = canonical_domain(name)
        if d in self._domains:
            raise AlreadyExists(f"domain {d} already exists")
        record = Domain(name=d, catch_all=canonical(catch_all) if catch_all else None)
        await self._put("domain", d, record, create=True)
        return record

    async def set_catch_all(self, name: str, target: str | None) -> Domain:
        d = self._require_domain(name)
        d.catch_all = canonical(target) if target else None
        await self._put("domain", d.name, d)
        return d

    async def remove_domain(self, name: str, *, force: bool = False) -> None:
        d = self._require_domain(name)
        users, aliases = self.users(d.name), self.aliases(d.name)
        if (users or aliases) and not force:
            raise DomainInUse(
                f"domain {d.name} still has {len(users)} users and {len(aliases)} aliases"
            )
        for u in users:
            await self._delete("user", u.address)
        for a in aliases:
            await self._delete("alias", a.address)
        await self._delete("domain", d.name)

    async def add_user(
        self, address: str, password: str, *, quota_bytes: int = 0, quota_messages: int = 0
    ) -> User:
        a = canonical(address)
        self._require_domain(addr.split(a)[1])
        if a in self._aliases:
            raise AlreadyExists(f"{a} is an alias")
        check_password(password)
        check_quota(quota_bytes, quota_messages)
        user = User(
            address=a,
            account_id=new_message_id().lower(),
            password_hash=await asyncio.to_thread(hash_password, password),
            quota_bytes=quota_bytes,
            quota_messages=quota_messages,
        )
        await self._put("user", a, user, create=True)
        return user

    async def set_password(self, address: str, password: str) -> User:
        user = self._require_user(address)
        check_password(password)
        user.password_hash = await asyncio.to_thread(hash_password, password)
        await self._put("user", user.address, user)
        return user

    async def set_quota(self, address: str, *, quota_bytes: int, quota_messages: int) -> User:
        user = self._require_user(address)
        check_quota(quota_bytes, quota_messages)
        user.quota_bytes, user.quota_messages = quota_bytes, quota_messages
        await self._put("user", user.address, user)
        return user

    async def remove_user(self, address: str) -> User:
        user = self._require_user(address)
        await self._delete("user", user.address)
        return user

    async def add_alias(self, address: str, targets: list[str]) -> Alias:
        a = canonical(address)
        self._require_domain(addr.split(a)[1])
        if a in self._users:
            raise AlreadyExists(f"{a} is a user")
        if not targets:
            raise InvalidName("an alias needs at least one target")
        canonical_targets = list(dict.fromkeys(canonical(t) for t in targets))
        existing = self._aliases.get(a)
        if existing is not None:
            merged = list(dict.fromkeys([*existing.targets, *canonical_targets]))
            existing.targets = merged
            await self._put("alias", a, existing)
            return existing
        record = Alias(address=a, targets=canonical_targets)
        await self._put("alias", a, record)
        return record

    async def remove_alias(self, address: str, targets: list[str] | None = None) -> None:
        a = canonical(address)
        alias = self._aliases.get(a)
        if alias is None:
            raise NoSuchAlias(f"no alias {a}")
        if targets:
            drop = {canonical(t) for t in targets}
            alias.targets = [t for t in alias.targets if t not in drop]
            if alias.targets:
                await self._put("alias", a, alias)
                return
        await self._delete("alias", a)

    def _require_domain(self, name: str) -> Domain:
        d = self._domains.get(canonical_domain(name))
        if d is None:
            raise NoSuchDomain(f"no domain {name}")
        return d

    def _require_user(self, address: str) -> User:
        user = self._users.get(canonical(address))
        if user is None:
            raise NoSuchUser(f"no user {address}")
        return user
