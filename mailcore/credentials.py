"""The password hashes, in the JetStream KV bucket ``CREDENTIALS``, apart from the directory.

The directory (``DIRECTORY``) is read by every filter and relay: recipients, aliases,
quotas, DKIM keys. The argon2id hashes are not: they live here, one key per user
(``user.<b64>``, the same key as the user's directory record), value
``{"v": 1, "hash": "$argon2id$…"}``. Only the store (which checks IMAP, POP3 and, for the
filters, SMTP AUTH: services/store/auth_rpc.py), the mirror (which copies them to the peer
store) and ``mailctl`` may read them (mailcore/bus/permissions.py).

Directories written before the split keep the hash in the user record
(``password_hash``). :func:`move_legacy_hashes` moves them here and empties the field; it
runs wherever the streams are declared (``mailctl up``, compose's nats container, a service
without its own NATS user), and until it has, the store still checks the hash it finds in
the user record (mailcore/directory.py), so an upgrade loses no login.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from mailcore.bus import kvwatch, names
from mailcore.bus.kvfollow import BucketFollower
from mailcore.directory_records import parse_key, record_key
from mailcore.logging import get_logger

log = get_logger("directory")

CREDENTIAL_VERSION = 1
KIND = "user"


def credential_key(address: str) -> str:
    """The key of ``address`` (canonical) in CREDENTIALS: the same as its directory record."""
    return record_key(KIND, address)


def encode_credential(password_hash: str) -> bytes:
    return json.dumps(
        {"v": CREDENTIAL_VERSION, "hash": password_hash}, separators=(",", ":")
    ).encode()


def decode_credential(key: str, value: bytes) -> str | None:
    """The hash a value holds; None (with a warning) for anything else."""
    try:
        data = json.loads(value)
        if data.get("v") != CREDENTIAL_VERSION or not isinstance(data.get("hash"), str):
            log.warning("credential of unknown version skipped", key=key, v=data.get("v"))
            return None
        return str(data["hash"])
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("bad credential skipped", key=key, error=str(exc))
        return None


def _address(key: str) -> str | None:
    try:
        kind, name = parse_key(key)
    except (ValueError, UnicodeDecodeError):
        return None
    return name if kind == KIND else None


class Credentials:
    """A copy of the CREDENTIALS bucket: the hash of each user, by canonical address.

    ``on_change(address)`` is called when a user's hash changes or goes (the password
    cache of mailcore/passwords.py must not outlive the hash it checked against)."""

    def __init__(
        self, js: JetStreamContext, kv: KeyValue, on_change: Callable[[str], None] | None = None
    ) -> None:
        self._hashes: dict[str, str] = {}
        self._on_change = on_change or (lambda _address: None)
        self._follow = BucketFollower(js, names.KV_CREDENTIALS, kv, self._all, self._one)

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        watch: bool = True,
        on_change: Callable[[str], None] | None = None,
    ) -> Credentials:
        c = cls(js, await js.key_value(names.KV_CREDENTIALS), on_change)
        if watch:
            await c._follow.start()
        else:
            await c._follow.reload()
        return c

    async def close(self) -> None:
        await self._follow.stop()

    async def restart_watch(self) -> None:
        await self._follow.restart()

    @property
    def synced(self) -> bool:
        return self._follow.synced

    def hash_of(self, address: str) -> str | None:
        return self._hashes.get(address)

    async def put(self, address: str, password_hash: str) -> None:
        await self._follow.kv.put(credential_key(address), encode_credential(password_hash))
        self._set(address, password_hash)

    async def delete(self, address: str) -> None:
        await self._follow.kv.delete(credential_key(address))
        self._set(address, None)

    def _set(self, address: str, password_hash: str | None) -> None:
        old = self._hashes.pop(address, None)
        if password_hash is not None:
            self._hashes[address] = password_hash
        if old != password_hash:
            self._on_change(address)

    def _all(self, entries: dict[str, KeyValue.Entry]) -> None:
        fresh: dict[str, str] = {}
        for key, entry in entries.items():
            address = _address(key)
            found = decode_credential(key, entry.value or b"") if address else None
            if address and found:
                fresh[address] = found
        for address in set(self._hashes) | set(fresh):
            if self._hashes.get(address) != fresh.get(address):
                self._on_change(address)
        self._hashes = fresh

    def _one(self, key: str, value: bytes | None) -> None:
        address = _address(key)
        if address is not None:
            self._set(address, decode_credential(key, value) if value is not None else None)


def _seconds(when: Any) -> float:
    if isinstance(when, datetime.datetime):
        return when.timestamp()
    return float(when or 0)


async def _written_at(js: JetStreamContext, key: str) -> float | None:
    """When the credential ``key`` was last written; None when there is none."""
    try:
        msg = await js.get_msg(
            "KV_" + names.KV_CREDENTIALS, subject=f"$KV.{names.KV_CREDENTIALS}.{key}"
        )
    except NotFoundError:
        return None
    if (msg.headers or {}).get("KV-Operation") in kvwatch.DELETE_OPERATIONS:
        return None
    return _seconds(msg.time)


async def move_legacy_hashes(js: JetStreamContext) -> int:
    """Move every hash still kept in a DIRECTORY user record to CREDENTIALS and empty the
    record's field; the number of users moved.

    The credential is written first, so a login works at every step. A credential that is
    already there and newer than the user record stays (the record's hash is older). A
    record changed meanwhile is left for the next run (its update names the revision
    read). Idempotent, and safe to run from several processes at once."""
    directory = await js.key_value(names.KV_DIRECTORY)
    credentials = await js.key_value(names.KV_CREDENTIALS)
    last = await kvwatch.last_revision(js, names.KV_DIRECTORY)
    watcher: Any = await directory.watchall()
    try:
        entries = await kvwatch.initial_values(watcher, last)
    finally:
        await watcher.stop()
    moved = 0
    for key, entry in entries.items():
        if not key.startswith(KIND + ".") or entry.revision is None:
            continue
        try:
            record = json.loads(entry.value or b"")
            legacy = record.get("password_hash")
        except (ValueError, AttributeError):
            continue
        if not legacy or not isinstance(legacy, str):
            continue
        written = await _written_at(js, key)
        if written is None or written < _seconds(entry.created):
            await credentials.put(key, encode_credential(legacy))
        record["password_hash"] = ""
        try:
            await directory.update(
                key, json.dumps(record, separators=(",", ":")).encode(), last=entry.revision
            )
        except KeyWrongLastSequenceError:
            continue  # changed since it was read: the next run looks again
        moved += 1
    if moved:
        log.info("password hashes moved from the directory to CREDENTIALS", users=moved)
    return moved


__all__ = [
    "CREDENTIAL_VERSION",
    "Credentials",
    "credential_key",
    "decode_credential",
    "encode_credential",
    "move_legacy_hashes",
]
