"""``mailctl queue list|show|retry|bounce|delete`` against a running relay."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore.bus import names, outbound_state
from mailcore.bus.outbound_state import QueueState
from services.ctl import outbound
from services.ctl.nats_cli import CtlError
from tests.services.filter.relay.conftest import REMOTE, RelayEnv, counter, eventually

ROOT = Path(__file__).resolve().parents[3]
GREYLIST = "451 4.7.1 greylisted, come back later"


def _mailctl(url: str, *args: str, status: int = 0) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "from services.cli import main; main()", *args, "--nats", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == status, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


async def ctl(env: RelayEnv, *args: str, status: int = 0) -> str:
    return await asyncio.to_thread(_mailctl, env.url, "queue", *args, status=status)


async def test_list_show_then_retry_now(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=[GREYLIST])
    # The next scheduled attempt is an hour away: only `retry` brings it sooner.
    await env.start_relay({REMOTE: sink.address}, relay_retry_schedule=[3600.0])
    msg = await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: sink.transactions == 1)

    async def listed() -> bool:
        return "attempts 1" in await ctl(env, "list")

    await eventually(listed)
    line = next(ln for ln in (await ctl(env, "list")).splitlines() if msg.id in ln)
    assert f"to bob@{REMOTE}" in line and "next in 59m" in line and GREYLIST in line
    shown = await ctl(env, "show", msg.id)
    assert f"deferred bob@{REMOTE}" in shown and GREYLIST in shown

    out = await ctl(env, "retry", msg.id)
    assert "queued for delivery now" in out
    await eventually(lambda: len(sink.messages) == 1)
    assert sink.transactions == 2
    await eventually(lambda: _empty(env))
    assert "outbound queue is empty" in await ctl(env, "list")


async def test_bounce_returns_it_to_the_sender_and_delete_drops_it(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=[GREYLIST] * 10)
    await env.start_relay({REMOTE: sink.address}, relay_retry_schedule=[3600.0])
    first = await env.submit([f"bob@{REMOTE}"])
    second = await env.submit([f"carol@{REMOTE}"])
    await eventually(lambda: sink.transactions == 2)

    async def both_tried() -> bool:
        return (await ctl(env, "list")).count("attempts 1") == 2

    await eventually(both_tried)
    before = counter("postern_relay_bounces_total", reason="operator")
    assert "returned to sender" in await ctl(env, "bounce", first.id)
    await eventually(lambda: env.inbox_has(1))
    (dsn,) = await env.inbox()
    assert "returned by the postmaster" in dsn.as_string()
    assert counter("postern_relay_bounces_total", reason="operator") - before == 1

    assert "deleted" in await ctl(env, "delete", second.id)
    await eventually(lambda: _empty(env))
    assert "no outbound message" in await ctl(env, "show", second.id, status=1)
    assert len(await env.inbox()) == 1  # delete tells no one
    assert sink.messages == []


async def test_retry_leaves_a_first_attempt_in_progress_alone(relay_env: RelayEnv) -> None:
    # A first attempt writes no queue record: the retry must learn from the relay
    # consumer that a relay has the message, or the mail goes out twice.
    env = relay_env
    sink = env.sink()
    sink.hold.clear()  # DATA waits: the relay is mid-transaction
    # However long the two commands take on a loaded machine, the relay keeps waiting
    # for the held reply (its own timeout would make a second transaction).
    await env.start_relay({REMOTE: sink.address}, relay_command_timeout=600.0)
    msg = await env.submit([f"bob@{REMOTE}"])
    await eventually(sink.holding.is_set)
    out = await ctl(env, "retry", msg.id)
    assert "a relay is delivering it now" in out and f"{msg.id} queued" not in out
    assert "nothing to do" in await ctl(env, "retry", "--all")
    sink.hold.set()
    await eventually(lambda: len(sink.messages) == 1)
    await eventually(lambda: _empty(env))
    assert sink.transactions == 1 and len(sink.messages) == 1


async def test_retry_of_a_message_no_relay_took_yet_keeps_its_place(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink()
    msg = await env.submit([f"bob@{REMOTE}"])  # no relay running yet
    seq = (await env.bus.js.stream_info(names.STREAM_OUTBOUND)).state.last_seq
    assert "queued for delivery now" in await ctl(env, "retry", msg.id)
    info = await env.bus.js.stream_info(names.STREAM_OUTBOUND)
    assert (info.state.messages, info.state.last_seq) == (1, seq)  # not published again
    await env.start_relay({REMOTE: sink.address})
    await eventually(lambda: _empty(env))
    assert sink.transactions == 1 and len(sink.messages) == 1


async def _empty(env: RelayEnv) -> bool:
    return await env.outbound() == 0


async def test_retry_loses_to_a_relay_that_started_a_retry_meanwhile(relay_env: RelayEnv) -> None:
    """`retry` read the record, then a relay marked its own retry in flight before the
    operator's write: the operator's retry must give way (it used to overwrite the
    record and publish a second copy: the mail went out twice)."""
    env = relay_env
    msg = await env.submit([f"bob@{REMOTE}"])  # no relay: the stream copy stays put
    kv = await env.bus.js.key_value(names.KV_RELAY)
    record = QueueState(id=msg.id, recipients=[f"bob@{REMOTE}"], attempts=1)
    await outbound_state.save(kv, record)
    entry = await outbound.find(env.bus.js, msg.id)  # the operator reads the record
    relay = await outbound_state.load(kv, msg.id)
    assert relay is not None
    relay.inflight = [REMOTE]
    await outbound_state.claim(kv, relay)  # a relay starts its retry
    last_seq = (await env.bus.js.stream_info(names.STREAM_OUTBOUND)).state.last_seq
    with pytest.raises(CtlError, match="a relay is delivering it now"):
        await outbound.retry(env.bus.js, entry)
    info = await env.bus.js.stream_info(names.STREAM_OUTBOUND)
    assert (info.state.messages, info.state.last_seq) == (1, last_seq)  # no second copy
    stored = await outbound_state.load(kv, msg.id)
    assert stored is not None and stored.inflight == [REMOTE]
