"""The relay's queue record: round trip through the KV bucket, pending recipients, keys."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.bus import names, outbound_state
from mailcore.bus.connect import Bus
from mailcore.bus.outbound_state import QueueState, state_key


def test_pending_leaves_out_done_and_bounced() -> None:
    s = QueueState(id="x", recipients=["a@r.test", "b@r.test", "c@r.test"])
    s.done.append("a@r.test")
    s.bounced["c@r.test"] = "550 5.1.1 no"
    assert s.pending() == ["b@r.test"]
    assert QueueState.decode(s.encode()) == s


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        QueueState.decode(b'{"id": "x", "v": 99}')


@given(st.text(min_size=1, max_size=60))
def test_state_key_is_a_valid_kv_key(mail_id: str) -> None:
    assert re.fullmatch(
        r"[-/_=.a-zA-Z0-9]+", state_key(mail_id).encode("ascii", "replace").decode()
    )


async def test_save_load_forget(bus: Bus) -> None:
    kv = await bus.js.key_value(names.KV_RELAY)
    s = QueueState(id="01ABC.fwd", sender="a@l.test", recipients=["b@r.test"], attempts=2)
    await outbound_state.save(kv, s)
    assert await outbound_state.load(kv, "01ABC.fwd") == s
    await outbound_state.forget(kv, "01ABC.fwd")
    assert await outbound_state.load(kv, "01ABC.fwd") is None
    await outbound_state.forget(kv, "never-there")  # harmless


async def test_claim_wins_once(bus: Bus) -> None:
    """Two parties that read the same revision: the first claim wins, the second sees
    StateChanged (a relay starting a retry vs. `mailctl queue retry`)."""
    kv = await bus.js.key_value(names.KV_RELAY)
    await outbound_state.save(kv, QueueState(id="claimed", recipients=["b@r.test"], attempts=1))
    relay = await outbound_state.load(kv, "claimed")
    operator = await outbound_state.load(kv, "claimed")
    assert relay is not None and operator is not None
    relay.inflight = ["r.test"]
    await outbound_state.claim(kv, relay)
    operator.next_attempt = 1.0
    with pytest.raises(outbound_state.StateChanged):
        await outbound_state.claim(kv, operator)
    stored = await outbound_state.load(kv, "claimed")
    assert stored is not None and stored.inflight == ["r.test"]
    await outbound_state.forget(kv, "claimed")


async def test_claim_of_an_absent_record_creates_it_once(bus: Bus) -> None:
    kv = await bus.js.key_value(names.KV_RELAY)
    await outbound_state.forget(kv, "fresh")  # a purged record counts as absent
    first = QueueState(id="fresh", recipients=["b@r.test"])
    await outbound_state.claim(kv, first)
    with pytest.raises(outbound_state.StateChanged):
        await outbound_state.claim(kv, QueueState(id="fresh", recipients=["b@r.test"]))
    first.attempts = 2
    await outbound_state.claim(kv, first)  # its own revision: goes on
    loaded = await outbound_state.load(kv, "fresh")
    assert loaded is not None and loaded.attempts == 2
    await outbound_state.forget(kv, "fresh")
