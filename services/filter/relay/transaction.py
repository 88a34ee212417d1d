"""One SMTP transaction to one destination carrying every recipient of one domain
(RFC 5321 §3.3), with opportunistic STARTTLS (RFC 3207; RFC 7435: an unverified
certificate is still better than plain text) and AUTH for a smarthost; the session is
kept for the next transaction to the same destination (:mod:`.sessions`).

The hosts of a route are tried in order: a connection failure or a temporary refusal of
the whole session moves on to the next host (RFC 5321 §5.1); a permanent refusal, or
answers per recipient, end the attempt. Every answer becomes a per-recipient result:
``None`` for accepted, a :class:`DeliveryError` (code + temporary flag) otherwise.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import aiosmtplib

from mailcore import metrics
from mailcore.bus.outcome import DeliveryError
from mailcore.logging import get_logger
from services.filter.relay.payload import send_data
from services.filter.relay.routes import Route
from services.filter.relay.sessions import Key, SessionPool

log = get_logger("relay")

Results = dict[str, DeliveryError | None]


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: list[str]
    body: bytes


def _opportunistic_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_OPPORTUNISTIC = _opportunistic_context()


def _error(exc: Exception, host: str) -> DeliveryError:
    """An aiosmtplib exception as a typed error; anything without a reply is temporary."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        enhanced, _, text = exc.message.partition(" ")
        if not (len(enhanced) >= 5 and enhanced[0] in "245" and enhanced[1] == "."):
            enhanced, text = "", exc.message
        return DeliveryError(exc.code, text, enhanced=enhanced, remote=host)
    reason = f"{type(exc).__name__}: {exc}".strip()
    return DeliveryError(451, f"{host}: {reason}", enhanced="4.4.1", temporary=True, remote=host)


class Transactor:
    def __init__(
        self,
        *,
        hostname: str,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
        pool: SessionPool | None = None,
    ) -> None:
        self.hostname = hostname
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.pool = pool or SessionPool()

    async def send(self, route: Route, env: Envelope) -> Results:
        """Deliver ``env`` over ``route``; never raises."""
        last: DeliveryError | None = None
        for host, port in route.hosts:
            started = time.perf_counter()
            try:
                results = await self._session(route, host, port, env)
            except DeliveryError as exc:
                last = exc
                log.info("relay attempt failed", host=host, port=port, answer=exc.reply)
                if not exc.temporary:
                    break
                continue  # RFC 5321 §5.1: try the next MX
            finally:
                metrics.RELAY_SECONDS.observe(time.perf_counter() - started)
            return results
        assert last is not None
        return dict.fromkeys(env.recipients, last)

    def _key(self, route: Route, host: str, port: int) -> Key:
        return (host, port, route.tls, route.username or "")

    async def _session(self, route: Route, host: str, port: int, env: Envelope) -> Results:
        key = self._key(route, host, port)
        client = self.pool.take(key)
        reused = client is not None
        try:
            if client is None:
                client = await self._open(route, host, port)
            try:
                results = await self._transaction(client, host, env, reused=reused)
            except _Stale:
                # A kept session the peer had closed: nothing was sent; a fresh one.
                client.close()
                client = await self._open(route, host, port)
                results = await self._transaction(client, host, env, reused=False)
        except DeliveryError:
            if client is not None:
                client.close()
            raise
        except Exception as exc:
            if client is not None:
                client.close()
            raise _error(exc, host) from None
        self.pool.give(key, client)
        return results

    async def _open(self, route: Route, host: str, port: int) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            local_hostname=self.hostname,
            timeout=self.command_timeout,
            use_tls=route.tls == "tls",
            start_tls=False,
            validate_certs=route.smarthost,
            tls_context=None if route.smarthost else _OPPORTUNISTIC,
            cert_bundle=route.ca,
        )
        try:
            await client.connect(timeout=self.connect_timeout)
            await client.ehlo()
            if route.tls in ("opportunistic", "starttls") and client.supports_extension("starttls"):
                # RFC 3207 §4.2: after STARTTLS the session starts afresh (EHLO again).
                await client.starttls()
            elif route.tls == "starttls":
                raise DeliveryError(
                    451, f"{host} offers no STARTTLS", enhanced="4.7.5", remote=host
                )
            if route.username and route.password:
                await client.login(route.username, route.password)
        except DeliveryError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise _error(exc, host) from None
        return client

    async def _transaction(
        self, client: aiosmtplib.SMTP, host: str, env: Envelope, *, reused: bool
    ) -> Results:
        utf8 = any(not a.isascii() for a in (env.sender, *env.recipients))
        options = ["SMTPUTF8"] if utf8 and client.supports_extension("smtputf8") else []
        if client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        try:
            await client.mail(env.sender, options=options)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            if reused:
                raise _Stale() from None
            raise
        results: Results = {}
        for rcpt in env.recipients:
            try:
                await client.rcpt(rcpt)
                results[rcpt] = None
            except aiosmtplib.SMTPRecipientRefused as exc:
                results[rcpt] = _error(exc, host)
        accepted = [r for r, err in results.items() if err is None]
        if not accepted:
            await client.rset()
            return results
        # RFC 5321 §4.1.1.4: one answer to DATA for every accepted recipient.
        await send_data(client, env.body, self.command_timeout)
        return results


class _Stale(Exception):
    """A reused session turned out closed before anything was sent."""
