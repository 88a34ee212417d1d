"""SMTP AUTH's password check, asked of the store (the hashes are not the filter's to read).

The filter's NATS user may read the directory (recipients, aliases, a user's addresses)
but not the password hashes (mailcore/credentials.py, mailcore/bus/permissions.py): the
store's auth responder checks them (services/store/auth_rpc.py, mailcore/bus/authrpc.py).
When no store answers in time the check is *unavailable*, which the AUTH handler answers
with ``454 4.7.0`` (RFC 4954 §6), never ``535``.
"""

from __future__ import annotations

from typing import Any

from mailcore.bus import authrpc, names
from mailcore.bus.authrpc import AuthRequest, Result
from mailcore.directory import Directory, User
from mailcore.logging import get_logger

log = get_logger("filter.auth")


class AuthUnavailable(Exception):
    """The store did not tell whether the password is right (no store, no answer in time)."""


class StorePasswordCheck:
    """``check(login, password)``: the user, None for a wrong login, or
    :class:`AuthUnavailable`."""

    def __init__(self, nc: Any, directory: Directory, timeout: float) -> None:
        self.nc = nc
        self.directory = directory
        self.timeout = timeout

    async def check(self, login: str, password: str) -> User | None:
        request = AuthRequest(login, password)
        answer = await authrpc.ask(self.nc, names.SUBJECT_AUTH_VERIFY, request, self.timeout)
        if answer.result is Result.FAIL:
            return None
        if answer.result is Result.OK:
            user = self.directory.user(answer.address)
            if user is not None:
                return user
            # the store knows a user this node's copy of the directory does not yet
            log.warning("authenticated user not in this node's directory yet")
        raise AuthUnavailable(answer.result.value)
