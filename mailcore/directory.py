"""The directory: domains, users, aliases and quotas, kept in the JetStream KV bucket
``DIRECTORY`` so that filter nodes validate recipients while the store is down
(architecture invariant 5).

Every service holds a watched in-memory copy: reads are dictionary look-ups, writes go to
KV and come back through the watch to every node. :class:`Directory` is that copy's life
cycle (the watch), its writes and authentication; the rest lives beside it and is
re-exported here:

* :mod:`mailcore.directory_view`: the in-memory copy, its reads and address resolution;
* :mod:`mailcore.directory_records`: the records, their KV keys and encoding;
* :mod:`mailcore.directory_errors`: the refusals;
* :mod:`mailcore.credentials`: the password hashes, in a bucket of their own
  (``CREDENTIALS``) that filters may not read; a directory opened with ``passwords``
  (the store) follows it too and can :meth:`Directory.authenticate`;
* :mod:`mailcore.passwords`: argon2id hashes, checked in threads a few at a time, and the
  cache of successful checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mailcore import address as addr
from mailcore.bus import names
from mailcore.bus.kvfollow import BucketFollower
from mailcore.bus.schemas import new_message_id
from mailcore.credentials import Credentials
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
        self._follow = BucketFollower(js, names.KV_DIRECTORY, kv, self._on_all, self._on_entry)
        self._passwords = PasswordChecker(verify_concurrency)
        self._credentials: Credentials | None = None  # followed (``passwords``)
        self._writer: Credentials | None = None  # written to only

    # --- life cycle ---------------------------------------------------------------------
    @classmethod
    async def open(
        cls, js: JetStreamContext, *, watch: bool = True, passwords: bool = False
    ) -> Directory:
        """Load the bucket; with ``watch`` keep following it until :meth:`close`. With
        ``passwords`` (the store) also the CREDENTIALS bucket, which :meth:`authenticate`
        needs; filters and relays may not read it (mailcore/bus/permissions.py)."""
        kv = await js.key_value(names.KV_DIRECTORY)
        d = cls(js, kv)
        if watch:
            await d._follow.start()
        else:
            await d._follow.reload()
        if passwords:
            d._credentials = await Credentials.open(js, watch=watch, on_change=d._passwords.forget)
        return d

    async def close(self) -> None:
        """Stop following the buckets."""
        await self._follow.stop()
        if self._credentials is not None:
            await self._credentials.close()

    async def restart_watch(self) -> None:
        """Follow afresh (after a NATS reconnect the old watch may be gone)."""
        await self._follow.restart()
        if self._credentials is not None:
            await self._credentials.restart_watch()

    @property
    def synced(self) -> bool:
        return self._follow.synced and (self._credentials is None or self._credentials.synced)

    async def reload(self) -> None:
        """Read every key once (used without a watch, and by tests)."""
        await self._follow.reload()

    def _on_all(self, values: dict[str, KeyValue.Entry]) -> None:
        self._replace_all(decode_records(values))

    def _on_entry(self, key: str, value: bytes | None) -> None:
        decoded = None if value is None else decode_record(key, value)
        if decoded:
            self._apply(*decoded)
        else:
            self._forget(key)

    def _user_changed(self, address: str) -> None:
        # A cached login must not outlive the hash it was checked against.
        self._passwords.forget(address)

    # --- authentication -----------------------------------------------------------------
    def _hash_of(self, user: User) -> str | None:
        """The user's hash: CREDENTIALS, else (a directory not yet migrated) the record's."""
        assert self._credentials is not None
        return self._credentials.hash_of(user.address) or user.password_hash or None

    async def authenticate(self, address: str, password: str) -> User | None:
        """The user when the password is right, else None (same answer for an unknown user).
        Only on a directory opened with ``passwords``."""
        if self._credentials is None:
            raise RuntimeError("this directory was opened without the credentials")
        user = self.user(address)
        stored = self._hash_of(user) if user is not None else None
        if user is None or stored is None:
            await self._passwords.check_unknown(password)
            return None
        if user.disabled:  # no cache: a quick answer would tell a right password
            await self._passwords.verify(stored, password, address=user.address)
            return None
        ok = await self._passwords.check(user.address, stored, password)
        return user if ok else None

    def share_logins(self, cache: SharedLoginCache) -> None:
        """Remember successful checks in ``cache`` too, which the store's other processes
        read (mailcore/logincache.py)."""
        self._passwords.shared = cache

    async def _hashes(self) -> Credentials:
        """Where hashes are written: the followed copy, or (a process that writes without
        following them: ``mailctl``) the bucket alone, nothing read."""
        if self._credentials is not None:
            return self._credentials
        if self._writer is None:
            kv = await self._js.key_value(names.KV_CREDENTIALS)
            self._writer = Credentials(self._js, kv, self._passwords.forget)
        return self._writer

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
            await (await self._hashes()).delete(u.address)
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
        password_hash = await asyncio.to_thread(hash_password, password)
        user = User(
            address=a,
            account_id=new_message_id().lower(),
            quota_bytes=quota_bytes,
            quota_messages=quota_messages,
        )
        await self._put("user", a, user, create=True)
        try:
            await (await self._hashes()).put(a, password_hash)
        except BaseException:
            await self._delete("user", a)  # no user without a password
            raise
        return user

    async def set_password(self, address: str, password: str) -> User:
        user = self._require_user(address)
        check_password(password)
        password_hash = await asyncio.to_thread(hash_password, password)
        # (a record from before CREDENTIALS keeps its old hash until
        # mailcore.credentials.move_legacy_hashes empties it: the credential wins)
        await (await self._hashes()).put(user.address, password_hash)
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
        await (await self._hashes()).delete(user.address)
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
