"""The lockout scenario of issue 19 #4 across the real services: the store process (IMAP,
POP3) and a filter node (SMTP AUTH) share one failed-login policy through NATS.

Ten wrong IMAP logins for alice from 127.0.0.2 lock that address out of alice's account —
on every protocol, and still after the store restarts — while alice, from 127.0.0.3 with
no failures, logs in on IMAP, POP3 and SMTP AUTH. Failures are logged in a line fail2ban
can match, and counted per protocol."""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import socket
import urllib.request
from pathlib import Path

from mailcore.bus.connect import Bus
from mailcore.tls import ensure_certificate
from services.ctl.daemons import free_port
from tests.services.filter.conftest import ALICE, PASSWORD, Accounts, StartFilter, client_tls
from tests.services.store.imap.test_process import StoreProcess
from tests.support.daemons import NatsServer

ATTACKER, USER = "127.0.0.2", "127.0.0.3"
FAIL2BAN = re.compile(r"authentication failure; rhost=(?P<host>\S+) user=\S+ protocol=imap")


def imap_login(port: int, source: str, password: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0)) as s:
        f = s.makefile("rwb")
        f.readline()
        f.write(f'a LOGIN {ALICE} "{password}"\r\n'.encode())
        f.flush()
        line = f.readline()
        while not line.startswith(b"a "):
            line = f.readline()
        return line.strip()


def pop3_login(port: int, source: str, password: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0)) as s:
        f = s.makefile("rwb")
        f.readline()
        f.write(f"USER {ALICE}\r\n".encode())
        f.flush()
        f.readline()
        f.write(f"PASS {password}\r\n".encode())
        f.flush()
        return f.readline().strip()


def smtp_login(port: int, source: str, password: str, ctx: object) -> int:
    with smtplib.SMTP_SSL(
        "127.0.0.1",
        port,
        source_address=(source, 0),
        context=ctx,
        timeout=60,  # type: ignore[arg-type]
    ) as c:
        c.ehlo("client.test")
        c.user, c.password = ALICE, password
        try:  # one mechanism: login() would try the next one on a closed connection
            return int(c.auth("PLAIN", c.auth_plain)[0])
        except smtplib.SMTPResponseException as exc:
            return int(exc.smtp_code)


def metric(port: int, name: str, protocol: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}{{protocol="{protocol}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_lockout_scenario(
    bus: Bus,
    nats_server: NatsServer,
    accounts: Accounts,
    start_filter: StartFilter,
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificate(cert, key, "localhost")
    env = {
        **os.environ,
        "POSTERN_DATA": str(tmp_path / "data"),
        "POSTERN_NATS_URL": nats_server.url,
        "POSTERN_IMAP_PORT": str(free_port()),
        "POSTERN_IMAPS_PORT": str(free_port()),
        "POSTERN_POP3_PORT": str(free_port()),
        "POSTERN_POP3S_PORT": "0",
        "POSTERN_OPS_PORT": str(free_port()),
        "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
        "POSTERN_AUTH_FAIL_DELAY": "0.01",
        "POSTERN_TLS_CERT": str(cert),
        "POSTERN_TLS_KEY": str(key),
        "POSTERN_FSYNC": "false",
        "POSTERN_LOG_FORMAT": "console",
    }
    imap, pop3 = int(env["POSTERN_IMAP_PORT"]), int(env["POSTERN_POP3_PORT"])
    ops = int(env["POSTERN_OPS_PORT"])
    store = StoreProcess(env, tmp_path / "store.log")
    await asyncio.to_thread(store.start)
    node = await start_filter(auth_fail_delay=0.01)
    smtp_tls = client_tls(node)
    answers: dict[str, object] = {}
    try:
        run = asyncio.to_thread
        wrong = [await run(imap_login, imap, ATTACKER, f"guess {i}") for i in range(10)]
        answers["10 wrong IMAP logins from 127.0.0.2"] = sorted(set(wrong))
        assert all(b"NO [AUTHENTICATIONFAILED]" in w for w in wrong), wrong
        # that address may not try alice any more, the right password included, anywhere
        answers["IMAP right password from 127.0.0.2"] = await run(
            imap_login, imap, ATTACKER, PASSWORD
        )
        assert b"NO [UNAVAILABLE]" in answers["IMAP right password from 127.0.0.2"]  # type: ignore[operator]
        answers["POP3 right password from 127.0.0.2"] = await run(
            pop3_login, pop3, ATTACKER, PASSWORD
        )
        assert (
            answers["POP3 right password from 127.0.0.2"]
            == b"-ERR [AUTH] Too many failed logins; try again later"
        )
        port = node.settings.submissions_port
        answers["SMTP AUTH right password from 127.0.0.2"] = await run(
            smtp_login, port, ATTACKER, PASSWORD, smtp_tls
        )
        assert answers["SMTP AUTH right password from 127.0.0.2"] == 421
        # alice herself, from an address with no failures: everything works
        answers["IMAP from 127.0.0.3"] = await run(imap_login, imap, USER, PASSWORD)
        assert str(answers["IMAP from 127.0.0.3"]).startswith("b'a OK")
        answers["POP3 from 127.0.0.3"] = await run(pop3_login, pop3, USER, PASSWORD)
        assert str(answers["POP3 from 127.0.0.3"]).startswith("b'+OK")
        answers["SMTP AUTH from 127.0.0.3"] = await run(smtp_login, port, USER, PASSWORD, smtp_tls)
        assert answers["SMTP AUTH from 127.0.0.3"] == 235
        assert await run(metric, ops, "postern_auth_failures_total", "imap") == 10
        assert await run(metric, ops, "postern_auth_throttled_total", "imap") >= 1
        # a restart forgets nothing: the counts are in NATS
        assert await run(store.stop) == 0
        await run(store.start)
        answers["IMAP right password from 127.0.0.2 after a store restart"] = await run(
            imap_login, imap, ATTACKER, PASSWORD
        )
        assert (
            b"NO [UNAVAILABLE]"
            in answers[  # type: ignore[operator]
                "IMAP right password from 127.0.0.2 after a store restart"
            ]
        )
        hosts = [m["host"] for m in FAIL2BAN.finditer((tmp_path / "store.log").read_text())]
        assert hosts == [ATTACKER] * 10
    finally:
        await asyncio.to_thread(store.stop)
        for k, v in answers.items():
            print(f"{k}: {v!r}")
