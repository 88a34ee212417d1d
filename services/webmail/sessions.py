"""Webmail sessions in the JetStream KV bucket SESSIONS, so any node serves any request.

A record holds the user, the IMAP credential sealed with AES-256-GCM (key from the
settings; the session id is the associated data, so a sealed credential is useless under
another id), the CSRF token, times, and the user's session generation. "Log out
everywhere" bumps the generation (key ``gen.<hash of user>``): every older record is then
refused by every node at its next request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

SCHEMA = 1
KEY_BYTES = 32


class SessionKeyError(ValueError):
    """The configured session key is not 32 bytes of URL-safe base64."""


def load_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else one kept in ``<data>/webmail/session.key`` (made once).
    Several nodes share sessions only if they share the key: set it in production."""
    if configured:
        try:
            key = base64.urlsafe_b64decode(configured.encode() + b"==")
        except ValueError as exc:
            raise SessionKeyError("webmail_session_key is not base64") from exc
        if len(key) != KEY_BYTES:
            raise SessionKeyError("webmail_session_key must be 32 bytes (44 base64 characters)")
        return key
    path = data_dir / "webmail" / "session.key"
    if path.exists():
        return base64.urlsafe_b64decode(path.read_bytes().strip() + b"==")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(base64.urlsafe_b64encode(key))
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


@dataclass(slots=True)
class Session:
    sid: str
    user: str
    sealed: str  # base64(nonce ‖ AES-GCM ciphertext of the password)
    csrf: str
    created: float
    seen: float
    generation: int
    client_ip: str = ""
    v: int = SCHEMA


def user_key(user: str) -> str:
    return "gen." + hashlib.sha256(user.lower().encode()).hexdigest()[:40]


class SessionStore:
    def __init__(self, kv: KeyValue, key: bytes, *, idle_timeout: float, max_age: float) -> None:
        self.kv = kv
        self.aead = AESGCM(key)
        self.idle_timeout = idle_timeout
        self.max_age = max_age

    # --- crypto ---------------------------------------------------------------------------
    def seal(self, sid: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        return base64.b64encode(
            nonce + self.aead.encrypt(nonce, secret.encode(), sid.encode())
        ).decode()

    def unseal(self, s: Session) -> str:
        raw = base64.b64decode(s.sealed)
        return self.aead.decrypt(raw[:12], raw[12:], s.sid.encode()).decode()

    # --- records --------------------------------------------------------------------------
    async def _generation(self, user: str) -> int:
        try:
            entry = await self.kv.get(user_key(user))
        except KeyNotFoundError:
            return 0
        return int(entry.value or b"0")

    async def create(self, user: str, password: str, client_ip: str) -> Session:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        s = Session(
            sid=sid,
            user=user,
            sealed=self.seal(sid, password),
            csrf=secrets.token_urlsafe(32),
            created=now,
            seen=now,
            generation=await self._generation(user),
            client_ip=client_ip,
        )
        await self._put(s)
        return s

    async def _put(self, s: Session) -> None:
        await self.kv.put("s." + s.sid, json.dumps(asdict(s)).encode())

    async def get(self, sid: str) -> Session | None:
        """The live session ``sid``, or None (unknown, expired, or ended everywhere)."""
        if not sid or len(sid) > 64 or not all(c.isalnum() or c in "-_" for c in sid):
            return None
        try:
            entry = await self.kv.get("s." + sid)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            data = json.loads(entry.value)
            s = Session(**data)
        except (ValueError, TypeError):
            return None
        now = time.time()
        if now - s.seen > self.idle_timeout or now - s.created > self.max_age:
            await self.end(sid)
            return None
        if s.generation != await self._generation(s.user):
            await self.end(sid)
            return None
        if now - s.seen > 60:  # keep writes rare: one per minute of activity
            s.seen = now
            await self._put(s)
        return s

    async def end(self, sid: str) -> None:
        try:
            await self.kv.delete("s." + sid)
        except KeyNotFoundError:
            pass

    async def end_everywhere(self, user: str) -> None:
        await self.kv.put(user_key(user), str(await self._generation(user) + 1).encode())
