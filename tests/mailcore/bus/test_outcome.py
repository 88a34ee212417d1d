"""Typed delivery outcomes and errors (code + temporary flag)."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from mailcore.bus.outcome import Deferred, DeliveryError, backoff


def test_error_temporary_follows_the_code_unless_told() -> None:
    assert DeliveryError(451, "try later").temporary
    assert not DeliveryError(550, "no such user").temporary
    assert DeliveryError(0, "connection refused", temporary=True).temporary
    assert DeliveryError(550, "x").enhanced == "5.0.0"
    assert DeliveryError(421, "busy\r\n  now", enhanced="4.3.2").reply == "421 4.3.2 busy now"


def test_deferred_delay_is_from_now_and_never_negative() -> None:
    d = Deferred.after("451 greylisted", 60)
    assert 59 <= d.delay <= 60
    assert Deferred("x", time.time() - 10).delay == 0.0


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=10), st.integers(-5, 100))
def test_backoff_walks_the_schedule_then_stays_on_its_last_step(
    schedule: list[float], attempt: int
) -> None:
    value = backoff(schedule, attempt)
    if attempt >= len(schedule):
        assert value == schedule[-1]
    elif attempt >= 1:
        assert value == schedule[attempt - 1]
    else:
        assert value == schedule[0]
