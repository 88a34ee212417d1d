"""The directory's records (domains, users, aliases) and how they are kept in the KV bucket.

Keys are ``domain.<b64>``, ``user.<b64>`` and ``alias.<b64>``, where ``<b64>`` is the
canonical name in unpadded URL-safe base64: names are data, never paths (invariant 4).
Values are the record as compact JSON with a version ``v``; a record of an unknown version,
or one that does not parse, is skipped with a warning rather than trusted. No record holds
a secret: password hashes are in their own bucket (mailcore/credentials.py).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.js.kv import KeyValue

from mailcore import address as addr
from mailcore.directory_errors import InvalidName
from mailcore.logging import get_logger

log = get_logger("directory")

RECORD_VERSION = 1


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
    # Empty: the hash is in CREDENTIALS (mailcore/credentials.py). A record written before
    # that split still holds it here until mailcore.credentials.move_legacy_hashes runs;
    # the field stays, empty, so that readers of that age still parse newer records.
    password_hash: str = ""
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


_KINDS: dict[str, type[Any]] = {"domain": Domain, "user": User, "alias": Alias}


def record_key(kind: str, name: str) -> str:
    token = base64.urlsafe_b64encode(name.encode()).rstrip(b"=").decode("ascii")
    return f"{kind}.{token}"


def parse_key(key: str) -> tuple[str, str]:
    """The kind and canonical name a key stands for (the inverse of :func:`record_key`)."""
    kind, _, token = key.partition(".")
    name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return kind, name


def encode_record(record: Any) -> bytes:
    return json.dumps(asdict(record), separators=(",", ":")).encode()


def decode_record(key: str, value: bytes) -> tuple[str, Any] | None:
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


def decode_records(entries: dict[str, KeyValue.Entry]) -> dict[str, tuple[str, Any]]:
    decoded = {key: decode_record(key, entry.value or b"") for key, entry in entries.items()}
    return {key: record for key, record in decoded.items() if record}


def canonical(address: str) -> str:
    try:
        return addr.normalize(address)
    except addr.InvalidAddress as exc:
        raise InvalidName(str(exc)) from None


def canonical_domain(domain: str) -> str:
    try:
        return addr.normalize_domain(domain)
    except addr.InvalidAddress as exc:
        raise InvalidName(str(exc)) from None


def check_quota(quota_bytes: int, quota_messages: int) -> None:
    if quota_bytes < 0 or quota_messages < 0:
        raise InvalidName("quotas are zero (unlimited) or positive")
