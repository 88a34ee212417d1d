"""A login on the slave before anything of the account reached it (two complete stores,
own data directories, nats-servers and processes): the slave creates the account's
default mailboxes itself, the master creates its own at the first delivery, and the two
are the same mailboxes — no split-brain mailbox conflict, the slave's clients keep their
UIDVALIDITY. Before, each store took its UIDVALIDITY from the clock: every default
mailbox collided and the slave's were merged away (``mirror conflict resolved``)."""

from __future__ import annotations

import asyncio
import imaplib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.ctl import daemons
from tests.services.mirror.conftest import ROOT, digests, hand_off, role_pair, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

USER, PASSWORD = "pat@pair.test", "password-pat"


def inbox_uidvalidity(port: int) -> int | None:
    """INBOX's UIDVALIDITY over IMAP (RFC 3501 §7.1), None while the store is not up."""
    try:
        with imaplib.IMAP4("127.0.0.1", port) as imap:
            imap.login(USER, PASSWORD)
            typ, _ = imap.select("INBOX", readonly=True)
            assert typ == "OK"
            (value,) = imap.response("UIDVALIDITY")[1]
            return int(value)
    except (OSError, imaplib.IMAP4.error):
        return None


async def test_a_login_on_the_slave_first_makes_no_mailbox_conflict(tmp_path: Path) -> None:
    lone: subprocess.Popen[bytes] | None = None
    async with role_pair(tmp_path, USER, PASSWORD) as p:
        a, b, bus_a, bus_b, account = p.a, p.b, p.bus_a, p.bus_b, p.account
        try:
            # --- the slave's store alone: a login creates the account there ------------------
            b.dir.mkdir(parents=True, exist_ok=True)
            env = {**b.env(), "POSTERN_OPS_PORT": str(daemons.free_port())}
            with open(b.log, "ab") as fh:
                lone = subprocess.Popen(
                    [sys.executable, "-m", "services.store"],
                    cwd=ROOT,
                    env=env,
                    stdout=fh,
                    stderr=fh,
                )
            seen: list[int | None] = [None]

            async def logged_in() -> bool:
                assert lone is not None and lone.poll() is None, b.log_tail()
                seen[0] = await asyncio.to_thread(inbox_uidvalidity, b.imap_port)
                return seen[0] is not None

            await until(logged_in, "a login on the slave", [])
            on_slave = seen[0]
            lone.send_signal(signal.SIGTERM)
            lone.wait(60)
            lone = None
            first = int(time.time())
            while int(time.time()) == first:  # a clock-based UIDVALIDITY would differ now
                await asyncio.sleep(0.05)

            # --- the master creates it at the first delivery; then the mirrors run -----------
            a.start()
            await hand_off(bus_a, USER, ["first"])

            async def delivered_on_a() -> bool:
                try:
                    return (await digests(bus_a, account)).get("INBOX") is not None
                except Exception:
                    return False

            await until(delivered_on_a, "the first delivery on the master", [a])
            b.start()
            state: dict[str, object] = {}

            async def converged(before: object = None) -> bool:
                try:
                    da = await digests(bus_a, account)
                    db = await digests(bus_b, account)
                except Exception:
                    return False
                state.update(a=da, b=db)
                return da == db and "INBOX" in da and da["INBOX"] != before

            await until(converged, "both stores equal", [a, b], seen=lambda: state)
            after_first = state["a"]["INBOX"]  # type: ignore[index]
            await hand_off(bus_a, USER, ["second"])  # the link carries on: the next one too

            async def second_on_both() -> bool:
                return await converged(after_first)

            await until(second_on_both, "the second message on both", [a, b], seen=lambda: state)
            assert await asyncio.to_thread(inbox_uidvalidity, b.imap_port) == on_slave
            assert await asyncio.to_thread(inbox_uidvalidity, a.imap_port) == on_slave
            for side in (a, b):
                log = side.log.read_text(errors="replace")
                assert "mirror conflict" not in log, side.log_tail()
                assert not re.search(r"\(merging\)", log), side.log_tail()
        finally:
            if lone is not None:
                lone.kill()
                lone.wait()
