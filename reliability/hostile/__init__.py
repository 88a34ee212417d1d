"""The hostile-input probes: each sends one bad input to a live cluster and records the
answer a correct server gives next to the answer it got (the bad-input table)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Awaitable, Callable

from reliability.cluster import Cluster
from reliability.report import Probe
from reliability.scenarios.common import Context


async def run_probes(ctx: Context) -> list[Probe]:
    from reliability.hostile import logins, mailbox, mime, smtp, webmail

    print("-- hostile input", flush=True)
    # An address is turned away after 4 failures for one account instead of 10: the
    # brute-force probes see the delays grow (2, 4, 8, 16 s) and then the lockout in about
    # 30 s, not the 3.5 minutes of the default's 30 s delays.
    c = Cluster(ctx.workdir / "hostile", extra_env={"POSTERN_LOGIN_MAX_FAILURES": "4"})
    users = list(c.users.items())
    (u0, p0), (u1, p1), (u2, p2), (u3, p3) = users[0], users[1], users[2], users[3]
    probes: list[Probe] = []
    steps: list[tuple[str, Callable[[], Awaitable[list[Probe]]]]] = [
        ("smuggling", lambda: smtp.smuggling(c.smtp_port, u0)),
        ("bare line endings", lambda: smtp.bare_line_endings(c.smtp_port)),
        ("overlong", lambda: smtp.overlong(c.smtp_port, u0)),
        ("1,000 RCPTs", lambda: smtp.many_rcpts(c.smtp_port, u0)),
        ("SMTP STARTTLS", lambda: smtp.starttls_injection(c.smtp_port)),
        ("AUTH abuse", lambda: smtp.auth_abuse(c.submission_port, u0)),
        ("open relay", lambda: smtp.relay_matrix(c.smtp_port, u0)),
        ("IMAP STARTTLS", lambda: _one(mailbox.imap_starttls_injection(c.imap_port))),
        ("POP3 STLS", lambda: _one(mailbox.pop3_stls_injection(c.pop3_port))),
        ("IMAP limits", lambda: mailbox.imap_limits(c.imap_port, u1, p1)),
        ("names", lambda: mailbox.imap_hostile_names(c.imap_port, u1, p1, c.data)),
        ("POP3 names", lambda: mailbox.pop3_hostile_names(c.pop3_port)),
        ("MIME", lambda: mime.mime_corpus(c.smtp_port, c.imap_port, u0, p0)),
        ("webmail", lambda: webmail.webmail_probes(c, u3, p3)),
        (
            "brute force",
            lambda: logins.all_protocols(c.submission_port, c.imap_port, c.pop3_port, u2, p2),
        ),
    ]
    try:
        await c.start()
        for label, step in steps:
            began = time.monotonic()
            try:
                got = await step()
            except Exception as exc:
                traceback.print_exc()
                got = [
                    Probe(label, "(probe crashed)", "-", f"{type(exc).__name__}: {exc}"[:80], False)
                ]
            for p in got:
                print(
                    f"   {'ok  ' if p.ok else 'FAIL'} {p.area}: {p.input[:50]} -> {p.got[:70]}",
                    flush=True,
                )
            print(f"   ({label}: {time.monotonic() - began:.0f}s)", flush=True)
            probes += got
        for svc in ("filter", "store"):
            alive = c.alive(svc)
            probes.append(
                Probe(
                    "survival",
                    f"{svc} after every probe",
                    "still running",
                    "running" if alive else "DEAD",
                    alive,
                )
            )
    finally:
        c.stop()
    return probes


async def _one(p: Awaitable[Probe]) -> list[Probe]:
    return [await p]
