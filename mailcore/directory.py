"""The directory: domains, users, aliases and quotas, kept in the JetStream KV bucket
``DIRECTORY`` so that filter nodes validate recipients and authenticate while the store
is down (architecture invariant 5).

Every service holds a watched in-memory copy: reads are dictionary look-ups, writes go to
KV and come back through the watch to every node. Password hashes are argon2id; checking
one runs in a thread, a few at a time, so logins never stall the event loop. A successful
check is remembered (keyed by an HMAC of the password under a per-process secret) until the
user's hash changes, as Dovecot's auth cache does.

Keys are ``domain.<b64>``, ``user.<b64>`` and ``alias.<b64>``, where ``<b64>`` is the
canonical name in unpadded URL-safe base64: names are data, never paths (invariant 4).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mailcore import address as addr
from mailcore.bus import kvwatch, names
from mailcore.bus.schemas import new_message_id
from mailcore.logging import get_logger

log = get_logger("directory")

RECORD_VERSION = 1
MAX_ALIAS_DEPTH = 8
_hasher = PasswordHasher()  # argon2id, library defaults (t=3, m=64 MiB, p=4)


class DirectoryError(Exception):
    """Base of every directory refusal; the message is fit for an operator."""


class NoSuchDomain(DirectoryError):
    pass


class NoSuchUser(DirectoryError):
    pass


class NoSuchAlias(DirectoryError):
    pass


class AlreadyExists(DirectoryError):
    pass


class DomainInUse(DirectoryError):
    pass


class InvalidName(DirectoryError):
    pass


@dataclass(slots=True)
class Domain:
    name: str
    catch_all: str | None = None
    created: float = field(default_factory=time.time)
    v: int = RECORD_VERSION


@dataclass(slots=True)
class User:
    address: str
    account_id: str
    password_hash: str
    quota_bytes: int = 0  # 0 = unlimited
    quota_messages: int = 0
    disabled: bool = False
    created: float = field(default_factory=time.time)
    v: int = RECORD_VERSION


@dataclass(slots=True)
class Alias:
    address: str
    targets: list[str]
    created: float = field(default_factory=time.time)
    v: int = RECORD_VERSION


@dataclass(slots=True)
class Resolution:
    """Where mail for one address goes: local users and remote (forwarded) addresses."""

    local: list[User] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.local or self.remote)


_KINDS: dict[str, type[Any]] = {"domain": Domain, "user": User, "alias": Alias}


def _key(kind: str, name: str) -> str:
    token = base64.urlsafe_b64encode(name.encode()).rstrip(b"=").decode("ascii")
    return f"{kind}.{token}"


def _decode(key: str, value: bytes) -> tuple[str, Any] | None:
    kind = key.partition(".")[0]
    cls = _KINDS.get(kind)
    if cls is None:
        return None
    try:
        data = json.loads(value)
        if data.get("v") != RECORD_VERSION:
            log.warning("directory record of unknown version skipped", key=key, v=data.get("v"))
            return None
        return kind, cls(**data)
    except (ValueError, TypeError) as exc:
        log.warning("bad directory record skipped", key=key, error=str(exc))
        return None


def _decode_all(entries: dict[str, KeyValue.Entry]) -> dict[str, tuple[str, Any]]:
    decoded = {key: _decode(key, entry.value or b"") for key, entry in entries.items()}
    return {key: record for key, record in decoded.items() if record}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _canonical(address: str) -> str:
    try:
        return addr.normalize(address)
    except addr.InvalidAddress as exc:
        raise InvalidName(str(exc)) from None


def _canonical_domain(domain: str) -> str:
    try:
        return addr.normalize_domain(domain)
    except addr.InvalidAddress as exc:
        raise InvalidName(str(exc)) from None


class Directory:
    """A watched copy of the DIRECTORY bucket; see the module docstring."""

    def __init__(
        self, js: JetStreamContext, kv: KeyValue, *, verify_concurrency: int | None = None
    ) -> None:
        self._js = js
        self._kv = kv
        self._domains: dict[str, Domain] = {}
        self._users: dict[str, User] = {}
        self._aliases: dict[str, Alias] = {}
        self._by_account: dict[str, User] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._watcher: Any = None  # nats-py's KeyWatcher of the running watch
        self._synced = asyncio.Event()
        self._verify_slots = asyncio.Semaphore(verify_concurrency or max(2, os.cpu_count() or 2))
        self._auth_secret = os.urandom(32)
        self._auth_cache: dict[tuple[str, bytes], str] = {}

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
        self._replace_all(_decode_all(values))

    async def _watch_forever(self) -> None:
        while True:
            try:
                last = await kvwatch.last_revision(self._js, names.KV_DIRECTORY)
                watcher = self._watcher = await self._kv.watchall()
                self._replace_all(_decode_all(await kvwatch.initial_values(watcher, last)))
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
        decoded = None if op in kvwatch.DELETE_OPERATIONS else _decode(key, value or b"")
        if decoded:
            self._apply(*decoded)
        else:
            self._forget(key)

    def _replace_all(self, records: dict[str, tuple[str, Any]]) -> None:
        self._domains.clear()
        self._users.clear()
        self._aliases.clear()
        self._by_account.clear()
        for kind, record in records.values():
            self._apply(kind, record)
        self._synced.set()

    def _apply(self, kind: str, record: Any) -> None:
        if kind == "domain":
            self._domains[record.name] = record
        elif kind == "user":
            old = self._users.get(record.address)
            if old is not None and old.password_hash != record.password_hash:
                self._forget_auth(record.address)
            self._users[record.address] = record
            self._by_account[record.account_id] = record
        elif kind == "alias":
            self._aliases[record.address] = record

    def _forget(self, key: str) -> None:
        kind, _, token = key.partition(".")
        name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if kind == "domain":
            self._domains.pop(name, None)
        elif kind == "user":
            user = self._users.pop(name, None)
            if user is not None:
                self._by_account.pop(user.account_id, None)
                self._forget_auth(name)
        elif kind == "alias":
            self._aliases.pop(name, None)

    def _forget_auth(self, address: str) -> None:
        for k in [k for k in self._auth_cache if k[0] == address]:
            del self._auth_cache[k]

    # --- reads --------------------------------------------------------------------------
    def domain(self, name: str) -> Domain | None:
        try:
            return self._domains.get(addr.normalize_domain(name))
        except addr.InvalidAddress:
            return None

    def domains(self) -> list[Domain]:
        return sorted(self._domains.values(), key=lambda d: d.name)

    def is_local_domain(self, name: str) -> bool:
        return self.domain(name) is not None

    def user(self, address: str) -> User | None:
        try:
            return self._users.get(addr.normalize(address))
        except addr.InvalidAddress:
            return None

    def user_by_account(self, account_id: str) -> User | None:
        return self._by_account.get(account_id)

    def users(self, domain: str | None = None) -> list[User]:
        found = self._users.values()
        if domain is not None:
            d = _canonical_domain(domain)
            found = [u for u in found if addr.split(u.address)[1] == d]  # type: ignore[assignment]
        return sorted(found, key=lambda u: u.address)

    def alias(self, address: str) -> Alias | None:
        try:
            return self._aliases.get(addr.normalize(address))
        except addr.InvalidAddress:
            return None

    def aliases(self, domain: str | None = None) -> list[Alias]:
        found: Iterable[Alias] = self._aliases.values()
        if domain is not None:
            d = _canonical_domain(domain)
            found = [a for a in found if addr.split(a.address)[1] == d]
        return sorted(found, key=lambda a: a.address)

    def resolve(self, address: str) -> Resolution:
        """Expand an address: user, alias (recursively), plus-tag, then catch-all.

        An empty :class:`Resolution` means "no such recipient" (the filter answers 550).
        """
        result = Resolution()
        try:
            canonical = addr.normalize(address)
        except addr.InvalidAddress:
            return result
        self._expand(canonical, result, depth=0, seen=set())
        return result

    def _expand(self, address: str, result: Resolution, depth: int, seen: set[str]) -> None:
        if address in seen or depth > MAX_ALIAS_DEPTH:
            return
        seen.add(address)
        local_part, domain = addr.split(address)
        if domain not in self._domains:
            if depth > 0 and address not in result.remote:
                result.remote.append(address)
            return
        user = self._users.get(address)
        if user is not None and not user.disabled:
            if all(u.address != user.address for u in result.local):
                result.local.append(user)
            return
        alias = self._aliases.get(address)
        if alias is not None:
            for target in alias.targets:
                self._expand(target, result, depth + 1, seen)
            return
        base = addr.without_tag(address)
        if base is not None:
            before = len(result.local) + len(result.remote)
            self._expand(base, result, depth, seen)
            if len(result.local) + len(result.remote) > before:
                return
        catch_all = self._domains[domain].catch_all
        if catch_all and depth == 0 and local_part:
            self._expand(catch_all, result, depth + 1, seen)

    def addresses_of(self, user: User) -> set[str]:
        """The addresses ``user`` may send from: their own and every alias that reaches them."""
        own = {user.address}
        for alias in self._aliases.values():
            if any(u.address == user.address for u in self.resolve(alias.address).local):
                own.add(alias.address)
        return own

    async def authenticate(self, address: str, password: str) -> User | None:
        """The user when the password is right, else None (same answer for an unknown user)."""
        user = self.user(address)
        digest = hmac.new(self._auth_secret, password.encode(), hashlib.sha256).digest()
        if user is not None and not user.disabled:
            cached = self._auth_cache.get((user.address, digest))
            if cached is not None and cached == user.password_hash:
                return user
        stored = user.password_hash if user is not None else _dummy_hash()
        async with self._verify_slots:
            ok = await asyncio.to_thread(_verify, stored, password)
        if not ok or user is None or user.disabled:
            return None
        if len(self._auth_cache) > 100_000:
            self._auth_cache.clear()
        self._auth_cache[(user.address, digest)] = user.password_hash
        return user

    # --- writes -------------------------------------------------------------------------
    async def _put(self, kind: str, name: str, record: Any, *, create: bool = False) -> None:
        value = json.dumps(asdict(record), separators=(",", ":")).encode()
        key = _key(kind, name)
        if create:
            try:
                await self._kv.create(key, value)
            except KeyWrongLastSequenceError:
                raise AlreadyExists(f"{kind} {name} already exists") from None
        else:
            await self._kv.put(key, value)
        self._apply(kind, record)

    async def _delete(self, kind: str, name: str) -> None:
        key = _key(kind, name)
        await self._kv.delete(key)
        self._forget(key)

    async def add_domain(self, name: str, *, catch_all: str | None = None) -> Domain:
        d = _canonical_domain(name)
        if d in self._domains:
            raise AlreadyExists(f"domain {d} already exists")
        record = Domain(name=d, catch_all=_canonical(catch_all) if catch_all else None)
        await self._put("domain", d, record, create=True)
        return record

    async def set_catch_all(self, name: str, target: str | None) -> Domain:
        d = self._require_domain(name)
        d.catch_all = _canonical(target) if target else None
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
        a = _canonical(address)
        self._require_domain(addr.split(a)[1])
        if a in self._aliases:
            raise AlreadyExists(f"{a} is an alias")
        _check_password(password)
        _check_quota(quota_bytes, quota_messages)
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
        _check_password(password)
        user.password_hash = await asyncio.to_thread(hash_password, password)
        await self._put("user", user.address, user)
        return user

    async def set_quota(self, address: str, *, quota_bytes: int, quota_messages: int) -> User:
        user = self._require_user(address)
        _check_quota(quota_bytes, quota_messages)
        user.quota_bytes, user.quota_messages = quota_bytes, quota_messages
        await self._put("user", user.address, user)
        return user

    async def remove_user(self, address: str) -> User:
        user = self._require_user(address)
        await self._delete("user", user.address)
        return user

    async def add_alias(self, address: str, targets: list[str]) -> Alias:
        a = _canonical(address)
        self._require_domain(addr.split(a)[1])
        if a in self._users:
            raise AlreadyExists(f"{a} is a user")
        if not targets:
            raise InvalidName("an alias needs at least one target")
        canonical_targets = list(dict.fromkeys(_canonical(t) for t in targets))
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
        a = _canonical(address)
        alias = self._aliases.get(a)
        if alias is None:
            raise NoSuchAlias(f"no alias {a}")
        if targets:
            drop = {_canonical(t) for t in targets}
            alias.targets = [t for t in alias.targets if t not in drop]
            if alias.targets:
                await self._put("alias", a, alias)
                return
        await self._delete("alias", a)

    def _require_domain(self, name: str) -> Domain:
        d = self._domains.get(_canonical_domain(name))
        if d is None:
            raise NoSuchDomain(f"no domain {name}")
        return d

    def _require_user(self, address: str) -> User:
        user = self._users.get(_canonical(address))
        if user is None:
            raise NoSuchUser(f"no user {address}")
        return user


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidName("a password needs at least 8 characters")
    if len(password) > 1024 or any(c in password for c in "\r\n\0"):
        raise InvalidName("a password may not hold line breaks or NUL and is at most 1024 long")


def _check_quota(quota_bytes: int, quota_messages: int) -> None:
    if quota_bytes < 0 or quota_messages < 0:
        raise InvalidName("quotas are zero (unlimited) or positive")


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user is unknown, so an unknown user costs the same time.
    Made on first use: hashing costs argon2's 64 MiB, which a process that never checks a
    password should not pay."""
    return _hasher.hash(os.urandom(16).hex())
