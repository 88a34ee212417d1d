"""One SMTP transaction to one destination carrying every recipient of one domain
(RFC 5321 §3.3), with opportunistic STARTTLS (RFC 3207; RFC 7435: an unverified
certificate is still better than plain text) and AUTH for a smarthost; the session is
kept for the next transaction to the same destination (:mod:`.sessions`). The commands
are pipelined where the server allows it (:mod:`.smtp_client`, RFC 2920).

The hosts of a route are tried in order: a connection failure or a temporary refusal of
the whole session moves on to the next host (RFC 5321 §5.1); a permanent refusal, or
answers per recipient, end the attempt. Every answer becomes a per-recipient result:
``None`` for accepted, a :class:`DeliveryError` (code + temporary flag) otherwise — so
one transaction can deliver to some recipients, bounce others (5xx) and defer the rest
(4xx).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from mailcore import metrics
from mailcore.bus.outcome import DeliveryError
from mailcore.logging import get_logger
from services.filter.relay.payload import encode_data
from services.filter.relay.routes import Route
from services.filter.relay.sessions import Key, SessionPool
from services.filter.relay.smtp_client import ConnectionLost, SmtpClient, SmtpError
from services.filter.relay.smtp_reply import Reply

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


def reply_error(reply: Reply, host: str) -> DeliveryError:
    """A refusal as a typed error: the code decides whether it is temporary."""
    return DeliveryError(reply.code, reply.message, enhanced=reply.enhanced, remote=host)


def lost_error(exc: ConnectionLost, host: str) -> DeliveryError:
    """No reply is always temporary (RFC 5321 §4.5.4.1: try again later)."""
    return DeliveryError(451, f"{host}: {exc}", enhanced="4.4.1", temporary=True, remote=host)


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
        text = encode_data(env.body)
        for host, port in route.hosts:
            started = time.perf_counter()
            try:
                results = await self._session(route, host, port, env, text)
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

    async def _session(
        self, route: Route, host: str, port: int, env: Envelope, text: bytes
    ) -> Results:
        key = self._key(route, host, port)
        client = self.pool.take(key)
        try:
            if client is not None:
                try:
                    results = await self._transaction(client, host, env, text)
                except ConnectionLost as exc:
                    if exc.replied:
                        raise
                    # A kept session the peer had closed: not one reply came back, so
                    # nothing was accepted; the same transaction on a fresh session.
                    client.close()
                    client = None
            if client is None:
                client = await self._open(route, host, port)
                results = await self._transaction(client, host, env, text)
        except SmtpError as exc:
            if client is not None:
                client.close()
            raise reply_error(exc.reply, host) from None
        except ConnectionLost as exc:
            if client is not None:
                client.close()
            raise lost_error(exc, host) from None
        except BaseException:
            if client is not None:
                client.close()
            raise
        self.pool.give(key, client)
        return results

    async def _open(self, route: Route, host: str, port: int) -> SmtpClient:
        # A smarthost's certificate is checked; an MX's is not (opportunistic TLS).
        context = ssl.create_default_context(cafile=route.ca) if route.smarthost else _OPPORTUNISTIC
        client = await SmtpClient.connect(
            host,
            port,
            local_hostname=self.hostname,
            timeout=self.command_timeout,
            connect_timeout=self.connect_timeout,
            tls=context if route.tls == "tls" else None,
        )
        try:
            if route.tls in ("opportunistic", "starttls") and client.supports("STARTTLS"):
                # RFC 3207 §4.2: after STARTTLS the session starts afresh (EHLO again).
                await client.starttls(context, server_hostname=host)
            elif route.tls == "starttls":
                raise DeliveryError(
                    451, f"{host} offers no STARTTLS", enhanced="4.7.5", remote=host
                )
            if route.username and route.password:
                await client.login(route.username, route.password)
        except BaseException:
            client.close()
            raise
        return client

    async def _transaction(
        self, client: SmtpClient, host: str, env: Envelope, text: bytes
    ) -> Results:
        utf8 = any(not a.isascii() for a in (env.sender, *env.recipients))
        options = ["SMTPUTF8"] if utf8 and client.supports("SMTPUTF8") else []
        if client.supports("8BITMIME"):
            options.append("BODY=8BITMIME")
        outcome = await client.transaction(env.sender, env.recipients, text, options)
        results: Results = {}
        for rcpt in env.recipients:
            reply = outcome.answers.get(rcpt)
            if reply is None:  # not asked: the transaction stopped before it
                results[rcpt] = DeliveryError(451, "not attempted", enhanced="4.4.1")
            elif 200 <= reply.code < 300:
                results[rcpt] = None
            else:
                results[rcpt] = reply_error(reply, host)
        return results
