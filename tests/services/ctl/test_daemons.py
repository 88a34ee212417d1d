"""Helpers that start daemons: port hand-out."""

from __future__ import annotations

from services.ctl import daemons


def test_free_port_never_repeats_within_a_process() -> None:
    # A service asks for several ports before binding any; the kernel's bind(0) alone repeats
    # itself within a few hundred calls (CI once gave SMTP and submissions the same port).
    ports = [daemons.free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
