"""The relay's SMTP client: one session to one server, with command pipelining.

When the server offers PIPELINING (RFC 2920), a transaction goes out as one write —
``RSET`` (on a reused session), ``MAIL FROM``, every ``RCPT TO`` and ``DATA`` — and the
replies are matched to the commands in order (RFC 2920 §3.1: DATA ends the group, the
client checks every reply). Without it, one command and one reply at a time (RFC 5321
§4.3). The message text follows a ``354`` in one more write. Each recipient's answer is
kept apart, so a transaction can be a partial success.

Replies come from :class:`~services.filter.relay.smtp_reply.ReplyParser`: bytes that
arrive while earlier replies are still unread are kept, never dropped.

Errors: :class:`SmtpError` carries the server's reply (a refusal of the session or of
the sender); :class:`ConnectionLost` says the server went away (or timed out) and how far
the transaction had got, so the caller knows whether anything could have been accepted.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from dataclasses import dataclass

from services.filter.relay.smtp_reply import Reply, ReplyError, ReplyParser, extensions

READ_SIZE = 65536


class SmtpError(Exception):
    """The server refused: the session (greeting, EHLO, STARTTLS, AUTH, a ``421``) or
    the transaction as a whole (MAIL)."""

    def __init__(self, reply: Reply, command: str) -> None:
        super().__init__(f"{command}: {reply}")
        self.reply = reply
        self.command = command


class ConnectionLost(Exception):
    """No (complete) reply: the connection closed, failed or timed out, or the server
    sent something that is not SMTP. ``replied`` is false when not one reply of the
    current exchange had arrived (on a reused session: it was dead before it was used)."""

    def __init__(self, reason: str, *, replied: bool = False) -> None:
        super().__init__(reason)
        self.replied = replied


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """Each recipient's answer: its ``RCPT`` reply when refused, else the reply to the
    end of the message text (or to ``DATA`` when that was refused)."""

    answers: dict[str, Reply]


class SmtpClient:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        local_hostname: str,
        timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.local_hostname = local_hostname
        self.timeout = timeout
        self._parser = ReplyParser()
        self._replies: deque[Reply] = deque()
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.transactions = 0  # finished on this session
        self._clean = True  # no transaction left open (a RSET is not needed)

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        local_hostname: str,
        timeout: float,
        connect_timeout: float,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> SmtpClient:
        """Connect (implicit TLS when ``tls`` is given), read the greeting, say EHLO."""
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=tls,
                    server_hostname=(server_hostname or host) if tls else None,
                    limit=READ_SIZE,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectionLost(f"connect to {host}:{port}: {_why(exc)}") from None
        client = cls(reader, writer, local_hostname=local_hostname, timeout=timeout)
        client.tls = tls is not None
        try:
            greeting = await client._read()
            if greeting.code != 220:  # RFC 5321 §3.1: 554 (or 421) refuses the session
                raise SmtpError(greeting, "greeting")
            await client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    # -- the session -------------------------------------------------------------------

    async def ehlo(self) -> None:
        """EHLO; HELO when the server does not know EHLO (RFC 5321 §4.1.4)."""
        reply = await self.command(f"EHLO {self.local_hostname}")
        if reply.code == 250:
            self.extensions = extensions(reply)
            return
        if reply.code in (500, 502):
            reply = await self.command(f"HELO {self.local_hostname}")
            if reply.code == 250:
                self.extensions = {}
                return
        raise SmtpError(reply, "EHLO")

    def supports(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """RFC 3207: STARTTLS, the handshake, then EHLO afresh (§4.2: what was learnt
        before is forgotten)."""
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise SmtpError(reply, "STARTTLS")
        if self._parser.partial or self._replies:
            # RFC 3207 §5: nothing may follow the 220 in the clear (a command injection).
            raise ConnectionLost("data after the STARTTLS reply", replied=True)
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.start_tls(context, server_hostname=server_hostname)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectionLost(f"TLS handshake: {_why(exc)}", replied=True) from None
        self.tls = True
        self.extensions = {}
        await self.ehlo()

    async def login(self, username: str, password: str) -> None:
        """AUTH PLAIN with an initial response (RFC 4954 §4, RFC 4616), or AUTH LOGIN
        when that is all the server offers."""
        methods = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in methods or "LOGIN" not in methods:
            token = _b64(f"\0{username}\0{password}")
            reply = await self.command(f"AUTH PLAIN {token}")
        else:
            reply = await self.command("AUTH LOGIN")
            if reply.code == 334:
                reply = await self.command(_b64(username))
            if reply.code == 334:
                reply = await self.command(_b64(password))
        if reply.code != 235:
            raise SmtpError(reply, "AUTH")

    async def command(self, line: str) -> Reply:
        """One command, its reply (lock-step)."""
        self._write(line.encode("utf-8") + b"\r\n")
        await self._drain()
        return await self._read(replied=False)

    async def quit(self) -> None:
        try:
            async with asyncio.timeout(2.0):
                await self.command("QUIT")
        except (ConnectionLost, SmtpError, TimeoutError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()

    @property
    def is_connected(self) -> bool:
        return not self._writer.is_closing() and not self._reader.at_eof()

    # -- one transaction ---------------------------------------------------------------

    async def transaction(
        self, sender: str, recipients: list[str], text: bytes, options: list[str]
    ) -> TransactionResult:
        """MAIL, RCPT for each recipient, DATA and ``text`` (already dot-stuffed and
        ending in ``.\\r\\n``: :func:`~services.filter.relay.payload.encode_data`).

        Raises :class:`SmtpError` when MAIL is refused or the server ends the session
        (``421``, RFC 5321 §3.8) before the text is accepted, :class:`ConnectionLost`
        when the connection fails; nothing was delivered then."""
        mail = f"MAIL FROM:<{sender}>" + "".join(f" {o}" for o in options)
        commands = [mail, *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]
        reset = not self._clean or self.transactions > 0
        self._clean = False
        if self.supports("PIPELINING"):
            replies = await self._pipelined(commands, reset=reset)
        else:
            if reset:
                await self._expect_reset()
            replies = await self._lockstep(commands)
        mail_reply = replies[0]
        n = len(recipients)
        answers = dict(zip(recipients, replies[1 : 1 + n], strict=False))
        accepted = [r for r, reply in answers.items() if reply.positive]
        data_reply = replies[1 + n] if len(replies) > 1 + n else None
        closing = next((r for r in replies if r.code == 421), None)
        if closing is not None:
            raise SmtpError(closing, "session")
        if not mail_reply.positive:
            raise SmtpError(mail_reply, "MAIL")
        if data_reply is None or data_reply.code != 354:
            # DATA refused (every recipient refused, or the server's own reason).
            for rcpt in accepted:
                answers[rcpt] = data_reply or mail_reply
            return TransactionResult(answers)
        if not accepted:
            # RFC 2920 §3.1: the server said 354 though no recipient was accepted; end
            # the (empty) text with "." and keep the refusals.
            self._write(b".\r\n")
            await self._drain(replied=True)
            await self._read(replied=True)
            return TransactionResult(answers)
        self._write(text)
        await self._drain(replied=True)
        final = await self._read(replied=True)
        if final.code == 421:
            raise SmtpError(final, "session")
        for rcpt in accepted:
            answers[rcpt] = final
        self._clean = True
        self.transactions += 1
        return TransactionResult(answers)

    async def _pipelined(self, commands: list[str], *, reset: bool) -> list[Reply]:
        """RFC 2920 §3.1: the group in one write, DATA last; its replies in order."""
        group = (["RSET"] if reset else []) + commands
        self._write("".join(f"{c}\r\n" for c in group).encode("utf-8"))
        await self._drain()
        replies: list[Reply] = []
        if reset:
            rset = await self._read(replied=False)
            if rset.code != 250:
                # A kept session that cannot be reset is no use: nothing of this group
                # counts (the server may be out of step); the caller opens a fresh one.
                self.close()
                raise ConnectionLost(f"RSET refused: {rset}", replied=False)
        for _ in commands:
            replies.append(await self._read(replied=reset or bool(replies)))
        return replies

    async def _lockstep(self, commands: list[str]) -> list[Reply]:
        """One command at a time; stops early when MAIL is refused, the server ends the
        session, or no recipient was accepted (DATA would only be refused)."""
        replies = [await self.command(commands[0])]
        if not replies[0].positive:
            return replies
        for cmd in commands[1:-1]:
            reply = await self._command_in_transaction(cmd)
            replies.append(reply)
            if reply.code == 421:
                return replies
        if not any(r.positive for r in replies[1:]):
            return replies
        replies.append(await self._command_in_transaction(commands[-1]))
        return replies

    async def _command_in_transaction(self, line: str) -> Reply:
        self._write(line.encode("utf-8") + b"\r\n")
        await self._drain(replied=True)
        return await self._read(replied=True)

    async def _expect_reset(self) -> None:
        reply = await self.command("RSET")
        if reply.code != 250:
            self.close()
            raise ConnectionLost(f"RSET refused: {reply}", replied=False)

    # -- the wire ----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionLost("connection closed")
        self._writer.write(data)

    async def _drain(self, *, replied: bool = False) -> None:
        """Wait until the kernel took the bytes; a server that stops reading is given
        the command timeout, as one that stops answering (RFC 5321 §4.5.3.2)."""
        if not self._writer.transport.get_write_buffer_size():
            return  # the kernel took every byte: nothing to wait for
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.close()
            raise ConnectionLost(f"write: {_why(exc)}", replied=replied) from None

    async def _read(self, *, replied: bool = True) -> Reply:
        """The next reply; ``replied`` tells :class:`ConnectionLost` whether an earlier
        reply of this exchange had arrived."""
        if self._replies:  # a pipelined group's replies often come in one segment
            return self._replies.popleft()
        try:
            async with asyncio.timeout(self.timeout):
                while not self._replies:
                    data = await self._reader.read(READ_SIZE)
                    if not data:
                        raise ConnectionLost("connection closed by the server", replied=replied)
                    self._replies.extend(self._parser.feed(data))
        except TimeoutError:
            self.close()
            raise ConnectionLost(f"no reply in {self.timeout:g}s", replied=replied) from None
        except ReplyError as exc:
            self.close()
            raise ConnectionLost(f"not SMTP: {exc}", replied=True) from None
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise ConnectionLost(f"read: {_why(exc)}", replied=replied) from None
        except ConnectionLost:
            self.close()
            raise
        return self._replies.popleft()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
