"""The relay scenario's remote MX and its checker: a real aiosmtpd sink that SIGKILLs the
relay at an armed step, and the report of submission acks against remote deliveries
(lost, phantom, duplicates explained only when a relay kill lies between two copies)."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
from types import SimpleNamespace

from aiosmtpd.controller import Controller

from reliability.ledger import Entry, Ledger, Outcome
from reliability.load import Load, make_message
from reliability.scenarios.relay import Sink, relay_report
from services.ctl import daemons


def _send(port: int, rid: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("a@rel.test", ["r@remote.test"], make_message(rid, "a@rel.test", ["r@x"]))


async def test_sink_kills_the_relay_after_the_data_and_counts_generations() -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    sink = Sink(lambda: victim.pid if victim.poll() is None else None)
    port = daemons.free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await asyncio.to_thread(_send, port, "m1")
        sink.arm("data")
        await asyncio.to_thread(_send, port, "m2")  # delivered; the relay dies before our 250
        assert victim.wait(30) == -9
        await asyncio.to_thread(_send, port, "m2")  # the restarted relay sends it again
        assert sink.fired == ["data"]
        assert sink.copies == {"m1": [0], "m2": [0, 1]}
    finally:
        controller.stop()
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def _load(entries: list[Entry]) -> Load:
    ledger = Ledger()
    ledger.extend(entries)
    return Load("127.0.0.1", 1, ledger, ["r@remote.test"])


def test_report_counts_lost_phantom_and_duplicates() -> None:
    acked = [Entry(f"m{i}", ("r@remote.test",), Outcome.ACKED, 250, "END") for i in range(4)]
    refused = Entry("m9", ("r@remote.test",), Outcome.REFUSED, 451, "END")
    sink = Sink(lambda: None)
    sink.copies.update({"m0": [0], "m1": [0, 1], "m2": [1, 1], "m9": [0]})  # m3 never came
    r = relay_report("relay", _load([*acked, refused]), sink)
    assert (r.acked, r.lost, r.phantom) == (4, 1, 1)
    assert (r.duplicated, r.explained_duplicates) == (2, 1)  # m2: no kill between copies
    assert not r.ok


def test_report_ok_with_an_explained_duplicate_only() -> None:
    acked = [Entry(f"m{i}", ("r@remote.test",), Outcome.ACKED, 250, "END") for i in range(2)]
    sink = Sink(lambda: None)
    sink.copies.update({"m0": [0], "m1": [0, 1]})
    r = relay_report("relay", _load(acked), sink)
    assert r.ok and r.duplicated == r.explained_duplicates == 1
    assert any("RFC 5321 §6.1" in d for d in r.details)


async def test_a_copy_belongs_to_the_relay_that_began_its_transaction() -> None:
    """A transaction begun before the kill whose final dot is read after it (another
    session's DATA fired the kill first) was sent by the killed relay: generation 0."""
    sink = Sink(lambda: None)

    def envelope(rid: str) -> SimpleNamespace:
        content = make_message(rid, "a@rel.test", ["r@remote.test"])
        return SimpleNamespace(
            mail_from=None, mail_options=[], rcpt_tos=[], original_content=content, content=content
        )

    early, killer = envelope("early"), envelope("killer")
    for env in (early, killer):
        await sink.handle_MAIL(None, None, env, "a@rel.test", [])
    sink.arm("data")
    await sink.handle_DATA(None, None, killer)
    await sink.handle_DATA(None, None, early)  # read after the kill
    late = envelope("early")  # the restarted relay sends it again
    await sink.handle_MAIL(None, None, late, "a@rel.test", [])
    await sink.handle_DATA(None, None, late)
    assert sink.copies == {"killer": [0], "early": [0, 1]}
