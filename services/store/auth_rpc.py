"""The store's auth responder: password checks for the filters' SMTP AUTH
(``postern.auth.verify``) and password changes for the webmail (``postern.auth.password``).

The password hashes are in CREDENTIALS, which only the store may read
(mailcore/credentials.py), so the services that take passwords without holding the hashes
ask here (mailcore/bus/authrpc.py). The check is the one IMAP and POP3 use
(:meth:`mailcore.directory.Directory.authenticate`: argon2id in threads a few at a time,
the cache of successful checks). The failed-login policy stays with the asker, which knows
the client's address (mailcore/loginguard.py).

nats-py runs a subscription's callbacks one after another, and a check takes an argon2
hash's time, so each request is answered by a task of its own; beyond
:data:`MAX_PENDING` requests in progress the answer is ``temporary`` at once. Every store
process of one NATS answers in the queue group ``store`` (one answer per request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mailcore import metrics
from mailcore.bus import authrpc, names
from mailcore.bus.authrpc import AuthAnswer, AuthRequest, Result
from mailcore.bus.connect import Bus
from mailcore.directory import Directory, DirectoryError
from mailcore.logging import get_logger

log = get_logger("auth")

MAX_PENDING = 256  # requests in progress; argon2 runs a few at a time behind them


async def verify(directory: Directory, req: AuthRequest) -> AuthAnswer:
    if not req.user or not req.password:
        return AuthAnswer(Result.FAIL)
    user = await directory.authenticate(req.user, req.password)
    if user is None:
        return AuthAnswer(Result.FAIL)
    return AuthAnswer(Result.OK, user.address)


async def change_password(directory: Directory, req: AuthRequest) -> AuthAnswer:
    """The new password once the current one is right (a stolen webmail session alone
    cannot change it)."""
    checked = await verify(directory, req)
    if checked.result is not Result.OK or req.new is None:
        return AuthAnswer(Result.FAIL)
    try:
        await directory.set_password(checked.address, req.new)
    except DirectoryError as exc:  # too short, line breaks…: fit for the user
        return AuthAnswer(Result.INVALID, checked.address, str(exc))
    log.info("password changed on request", user=checked.address)
    return AuthAnswer(Result.OK, checked.address)


OPS = {names.SUBJECT_AUTH_VERIFY: verify, names.SUBJECT_AUTH_PASSWORD: change_password}


class AuthResponder:
    """Answers the auth subjects on ``bus`` from ``directory`` (opened with passwords)."""

    def __init__(self, bus: Bus, directory: Directory, max_pending: int = MAX_PENDING) -> None:
        self.bus = bus
        self.directory = directory
        self.max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Any] = []

    async def start(self) -> None:
        for subject in OPS:
            sub = await self.bus.nc.subscribe(subject, queue="store", cb=self._on_request)
            self._subs.append(sub)

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)

    async def _on_request(self, msg: Any) -> None:
        if len(self._tasks) >= self.max_pending:
            await self._respond(msg, "busy", authrpc.TEMPORARY)
            return
        task = asyncio.create_task(self._answer(msg), name="auth-request")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Any) -> None:
        op = "verify" if msg.subject == names.SUBJECT_AUTH_VERIFY else "password"
        try:
            answer = await OPS[msg.subject](self.directory, authrpc.decode_request(msg.data))
        except authrpc.BadRequest as exc:
            log.warning("bad auth request", subject=msg.subject, error=str(exc)[:200])
            answer = AuthAnswer(Result.FAIL)
        except Exception:
            log.exception("auth request failed", subject=msg.subject)
            answer = authrpc.TEMPORARY
        await self._respond(msg, op, answer)

    @staticmethod
    async def _respond(msg: Any, op: str, answer: AuthAnswer) -> None:
        metrics.AUTH_REQUESTS.labels(op, answer.result.value).inc()
        if msg.reply:
            try:
                await msg.respond(authrpc.encode_answer(answer))
            except Exception as exc:  # the asker's connection is gone: nothing to tell
                log.warning("auth answer not sent", error=f"{type(exc).__name__}: {exc}")
