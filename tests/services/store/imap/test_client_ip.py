"""ID x-originating-ip (RFC 2971 §3.3): a trusted webmail node names the browser's address,
which then keys the login throttle; from anyone else the field is ignored."""

from __future__ import annotations

from services.store.auth import LoginThrottle, parse_networks
from tests.services.store.imap.conftest import ALICE, Factory


async def _login_with_id(h: object, client_ip: str, password: str) -> bytes:
    from tests.services.store.imap.conftest import ImapHarness

    assert isinstance(h, ImapHarness)
    c = await h.raw()
    try:
        await c.cmd(f'I1 ID ("name" "webmail" "x-originating-ip" "{client_ip}")'.encode())
        reply = await c.cmd(f'L1 LOGIN {ALICE} "{password}"'.encode())
        return reply[-1]
    finally:
        await c.close()


async def test_trusted_peer_names_the_client_for_the_throttle(make_imap: Factory) -> None:
    throttle = LoginThrottle(0.0, max_per_ip=2, max_per_account=100)
    h = await make_imap(throttle=throttle)
    h.rt.trusted_id_networks = parse_networks("127.0.0.0/8")
    for _ in range(2):
        assert b"NO" in await _login_with_id(h, "203.0.113.7", "wrong")
    # 203.0.113.7 is now throttled, even with the right password …
    assert b"L1 NO" in await _login_with_id(h, "203.0.113.7", "correct horse battery")
    # … while another browser behind the same webmail node is not
    assert b"L1 OK" in await _login_with_id(h, "198.51.100.2", "correct horse battery")


async def test_untrusted_peer_cannot_choose_its_address(make_imap: Factory) -> None:
    throttle = LoginThrottle(0.0, max_per_ip=2, max_per_account=100)
    h = await make_imap(throttle=throttle)
    h.rt.trusted_id_networks = parse_networks("192.0.2.0/24")  # not loopback
    for n in range(2):
        assert b"NO" in await _login_with_id(h, f"203.0.113.{n}", "wrong")
    # both failures counted against 127.0.0.1, whatever the ID said
    assert b"L1 NO" in await _login_with_id(h, "198.51.100.2", "correct horse battery")
