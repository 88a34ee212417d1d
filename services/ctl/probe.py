"""``mailctl probe``: one test message through the whole path, SurgeMail's watchdog check.

It sends a message with a unique Subject to the probe account over SMTP (the MX port, as
any sending MTA would), then logs in over IMAP on every store — both sides of a mirrored
pair — and waits until the message is there (INBOX, or Junk when the spam filter tagged
it). Each leg's time is printed; the message is then expunged on the first store (the
mirror removes it from the others). Any failure prints ``PROBE FAILED: <leg>: <why>`` on
stderr and exits 1, so cron mails it and a compose health check marks the service
unhealthy.
"""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import click

from mailcore.config import ClusterSettings, FilterSettings, StoreSettings, load_settings
from services.ctl import pair

POLL = 0.2  # seconds between IMAP searches


class ProbeFailed(Exception):
    """One leg of the probe failed; the message names it."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    name: str = ""

    def __str__(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"{where} ({self.name})" if self.name else where


def parse_endpoint(text: str, name: str = "") -> Endpoint:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{text!r}: expected host:port")
    return Endpoint(host, int(port), name)


def _tls() -> ssl.SSLContext:
    """The probe checks its own servers, whose certificate may be self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send(smtp: Endpoint, user: str, subject: str, timeout: float) -> None:
    msg = EmailMessage()
    msg["From"] = user
    msg["To"] = user
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid("probe")
    msg.set_content("Postern probe (mailctl probe): this message removes itself.\n")
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
            client.ehlo()
            if client.has_extn("starttls"):
                client.starttls(context=_tls())
                client.ehlo()
            client.send_message(msg, from_addr=user, to_addrs=[user])
    except (OSError, smtplib.SMTPException) as exc:
        raise ProbeFailed(f"smtp {smtp}: {type(exc).__name__}: {exc}") from None


def _login(imap: Endpoint, user: str, password: str, timeout: float) -> imaplib.IMAP4:
    client = imaplib.IMAP4(imap.host, imap.port, timeout=timeout)
    if "STARTTLS" in client.capabilities:
        client.starttls(ssl_context=_tls())
    client.login(user, password)
    return client


def _find(client: imaplib.IMAP4, subject: str) -> tuple[str, list[bytes]] | None:
    for box in ("INBOX", "Junk"):
        typ, _ = client.select(box)
        if typ != "OK":
            continue
        typ, data = client.uid("SEARCH", "HEADER", "Subject", f'"{subject}"')
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        if uids:
            return box, uids
    return None


def read_back(
    imap: Endpoint, user: str, password: str, subject: str, *, deadline: float, expunge: bool
) -> None:
    """Wait until ``subject`` is in the mailbox on ``imap``; expunge it when asked."""
    try:
        client = _login(imap, user, password, max(1.0, deadline - time.monotonic()))
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ProbeFailed(f"imap {imap}: {type(exc).__name__}: {exc}") from None
    try:
        while True:
            found = _find(client, subject)
            if found is not None:
                break
            if time.monotonic() > deadline:
                raise ProbeFailed(f"imap {imap}: the message did not arrive in time")
            time.sleep(POLL)
        if expunge:
            box, uids = found
            client.select(box)
            client.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", "(\\Deleted)")
            client.expunge()
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ProbeFailed(f"imap {imap}: {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def run_probe(
    smtp: Endpoint,
    stores: list[Endpoint],
    user: str,
    password: str,
    *,
    timeout: float,
    echo: Callable[[str], None] = click.echo,
) -> None:
    subject = f"postern-probe-{uuid.uuid4().hex}"
    started = time.monotonic()
    deadline = started + timeout
    send(smtp, user, subject, timeout)
    sent = time.monotonic()
    echo(f"smtp {smtp}: accepted in {sent - started:.3f}s")
    # every store but the first is read first: the first one then expunges the message
    for imap in [*stores[1:], stores[0]]:
        read_back(imap, user, password, subject, deadline=deadline, expunge=imap is stores[0])
        echo(f"imap {imap}: read back {time.monotonic() - sent:.3f}s after the 250")
    echo(f"probe OK in {time.monotonic() - started:.3f}s")


def default_stores() -> list[Endpoint]:
    """Both stores of ``mailctl up --mirror`` when it runs here, else POSTERN_IMAP_PORT."""
    found = pair.read()
    if found:
        return [Endpoint("127.0.0.1", s.imap, s.node) for s in found]
    s = load_settings(StoreSettings)
    host = "127.0.0.1" if s.listen_host in ("0.0.0.0", "::") else s.listen_host
    return [Endpoint(host, s.imap_port)]


def default_smtp() -> Endpoint:
    f = load_settings(FilterSettings)
    host = "127.0.0.1" if f.listen_host in ("0.0.0.0", "::") else f.listen_host
    return Endpoint(host, f.smtp_port)


def default_login() -> tuple[str, str]:
    """POSTERN_PROBE_USER / _PASSWORD, else the demo login of ``mailctl up``."""
    c = load_settings(ClusterSettings)
    if c.probe_user:
        return c.probe_user, c.probe_password or ""
    demo = Path(c.data).resolve() / "demo-login.txt"
    try:
        password = demo.read_text().strip()
    except OSError:
        raise ProbeFailed(
            "no probe account: set POSTERN_PROBE_USER and POSTERN_PROBE_PASSWORD"
        ) from None
    return f"{c.demo_user}@{c.demo_domain}", password


@click.command("probe")
@click.option("--smtp", "smtp_at", default=None, help="host:port (default the filter's MX port)")
@click.option(
    "--imap",
    "imap_at",
    multiple=True,
    help="host:port of a store's IMAP (repeatable; default every store of this machine)",
)
@click.option("--user", default=None, help="probe account (default POSTERN_PROBE_USER)")
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="seconds for the whole probe (default POSTERN_PROBE_TIMEOUT)",
)
def probe(
    smtp_at: str | None, imap_at: tuple[str, ...], user: str | None, timeout: float | None
) -> None:
    """Send a test message over SMTP and read it back over IMAP on every store; exit 1
    with PROBE FAILED on stderr when a leg fails (cron, compose health checks)."""
    c = load_settings(ClusterSettings)
    try:
        login, password = default_login() if user is None else (user, c.probe_password or "")
        smtp = parse_endpoint(smtp_at) if smtp_at else default_smtp()
        stores = [parse_endpoint(e) for e in imap_at] or default_stores()
        run_probe(smtp, stores, login, password, timeout=timeout or c.probe_timeout)
    except ProbeFailed as exc:
        click.echo(f"PROBE FAILED: {exc}", err=True)
        raise SystemExit(1) from None


__all__ = ["Endpoint", "ProbeFailed", "default_stores", "parse_endpoint", "probe", "run_probe"]
