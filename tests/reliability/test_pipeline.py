"""The whole chain on a real cluster (nats-server, store, filter as processes): SMTP load
into the ledger, IMAP into snapshots, the checker over both. A clean run passes; a message
removed behind the ledger's back is reported lost; one appended is reported phantom."""

from __future__ import annotations

import asyncio
import imaplib
from pathlib import Path

import pytest

from reliability.checker import check
from reliability.cluster import HOST
from reliability.ledger import HEADER
from reliability.scenarios.common import Context, cluster_run

pytestmark = pytest.mark.slow


async def test_checker_over_imap_passes_clean_and_catches_loss_and_phantom(
    tmp_path: Path,
) -> None:
    ctx = Context(tmp_path, duration=2, senders=2)
    async with cluster_run(ctx, "pipeline") as run:
        run.start_load(max_attempts=1)
        while sum(1 for _ in run.ledger) < 20:
            await asyncio.sleep(0.1)
        await run.stop_load()
        assert await run.cluster.drained(60)
        assert await run.take_snapshot()
        clean = check("clean", run.ledger, run.snapshots)
        assert clean.ok, clean.details
        assert clean.acked >= 20

        # Behind the ledger's back: expunge one acked message, append one never sent.
        user, password = next(iter(run.cluster.users.items()))
        box = next(v for v in run.snapshots[-1] if v.user == user and v.messages)
        victim_uid, victim = box.messages[0]

        def tamper() -> None:
            with imaplib.IMAP4(HOST, run.cluster.imap_port) as imap:
                imap.login(user, password)
                imap.select(box.mailbox)
                imap.uid("STORE", str(victim_uid), "+FLAGS", "(\\Deleted)")
                imap.expunge()
                imap.append(
                    "INBOX", None, None, f"{HEADER}: never-sent\r\nSubject: x\r\n\r\nx\r\n".encode()
                )

        await asyncio.to_thread(tamper)
        assert await run.take_snapshot()
        report = check("tampered", run.ledger, run.snapshots)
        assert not report.ok
        assert report.lost == 1 and any(str(victim) in d for d in report.details)
        assert report.phantom == 1
        assert report.uid_violations == 0  # expunge and append keep UIDs in order
