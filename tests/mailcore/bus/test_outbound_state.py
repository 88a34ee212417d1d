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
