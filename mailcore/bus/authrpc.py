"""Checking and changing passwords by asking the store (NATS request/reply, no stream).

The password hashes are readable by the store only (mailcore/credentials.py). A filter
checks SMTP AUTH by asking ``postern.auth.verify``; the webmail changes a password by
asking ``postern.auth.password``. The store's responder (services/store/auth_rpc.py)
answers; its permissions are the only ones that may subscribe to these subjects, and the
answer comes back on the asker's own inbox (mailcore/bus/permissions.py).

Payloads are compact JSON with a version ``v``:

* verify: ``{"v": 1, "user": <login name>, "password": <password>}``
* password: ``{"v": 1, "user": <login name>, "password": <current>, "new": <new>}``
* answer: ``{"v": 1, "result": "ok" | "fail" | "invalid" | "temporary", "address":
  <canonical address, on ok>, "detail": <why a new password is refused, on invalid>}``

No responder, no answer in time, or an answer that does not parse is ``temporary``: the
asker says "try again later" (SMTP ``454 4.7.0``, RFC 4954 §6), never "wrong password".
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import nats.errors

RPC_VERSION = 1


class Result(enum.Enum):
    OK = "ok"
    FAIL = "fail"  # wrong user or password (one answer for both)
    INVALID = "invalid"  # a new password the directory refuses (too short…)
    TEMPORARY = "temporary"  # the store cannot tell now


@dataclass(frozen=True, slots=True)
class AuthRequest:
    user: str
    password: str
    new: str | None = None  # set on postern.auth.password


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    result: Result
    address: str = ""
    detail: str = ""


TEMPORARY = AuthAnswer(Result.TEMPORARY)


class BadRequest(ValueError):
    """A payload that is not a request of a known version."""


def encode_request(req: AuthRequest) -> bytes:
    data: dict[str, Any] = {"v": RPC_VERSION, "user": req.user, "password": req.password}
    if req.new is not None:
        data["new"] = req.new
    return json.dumps(data, separators=(",", ":")).encode()


def decode_request(payload: bytes) -> AuthRequest:
    try:
        data = json.loads(payload)
        if data.get("v") != RPC_VERSION:
            raise BadRequest(f"unknown version {data.get('v')!r}")
        user, password, new = data["user"], data["password"], data.get("new")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(user, str) or not isinstance(password, str):
        raise BadRequest("user and password are strings")
    if new is not None and not isinstance(new, str):
        raise BadRequest("new is a string")
    return AuthRequest(user, password, new)


def encode_answer(answer: AuthAnswer) -> bytes:
    data: dict[str, Any] = {"v": RPC_VERSION, "result": answer.result.value}
    if answer.address:
        data["address"] = answer.address
    if answer.detail:
        data["detail"] = answer.detail
    return json.dumps(data, separators=(",", ":")).encode()


def decode_answer(payload: bytes) -> AuthAnswer:
    """The answer; ``temporary`` for anything that is not one."""
    try:
        data = json.loads(payload)
        if data.get("v") != RPC_VERSION:
            return TEMPORARY
        return AuthAnswer(
            Result(data["result"]), str(data.get("address", "")), str(data.get("detail", ""))
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return TEMPORARY


async def ask(nc: Any, subject: str, request: AuthRequest, timeout: float) -> AuthAnswer:
    """Send ``request`` to the store's responder; ``temporary`` when none answers."""
    try:
        msg = await nc.request(subject, encode_request(request), timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return TEMPORARY
    except nats.errors.Error:  # disconnected, connection closed…
        return TEMPORARY
    return decode_answer(msg.data or b"")


__all__ = [
    "RPC_VERSION",
    "TEMPORARY",
    "AuthAnswer",
    "AuthRequest",
    "BadRequest",
    "Result",
    "ask",
    "decode_answer",
    "decode_request",
    "encode_answer",
    "encode_request",
]
