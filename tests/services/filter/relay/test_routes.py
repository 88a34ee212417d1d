"""Routing: static routes, the smarthost, and MX answers (dnspython's exceptions)."""

from __future__ import annotations

import dns.exception
import dns.resolver
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.bus.outcome import DeliveryError
from services.filter.relay.routes import Router, parse_hostport


def lookup_of(answer: object):  # type: ignore[no-untyped-def]
    async def lookup(domain: str) -> list[tuple[int, str]]:
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    return lookup


async def test_mx_hosts_in_preference_order() -> None:
    router = Router(
        routes={}, mx_port=2525, lookup=lookup_of([(20, "b.example"), (10, "a.example.")])
    )
    route = await router.route("Example.ORG")
    assert route.hosts == [("a.example", 2525), ("b.example", 2525)]
    assert route.key == "example.org" and not route.smarthost


async def test_no_mx_falls_back_to_the_domain_itself() -> None:
    router = Router(routes={}, lookup=lookup_of(dns.resolver.NoAnswer()))
    assert (await router.route("example.org")).hosts == [("example.org", 25)]


@pytest.mark.parametrize(
    ("answer", "code", "temporary"),
    [
        (dns.resolver.NXDOMAIN(), 550, False),
        ([(0, ".")], 556, False),  # RFC 7505 null MX
        (dns.exception.Timeout(), 451, True),
        (dns.resolver.NoNameservers(), 451, True),
    ],
)
async def test_dns_failures_are_typed(answer: object, code: int, temporary: bool) -> None:
    router = Router(routes={}, lookup=lookup_of(answer))
    with pytest.raises(DeliveryError) as info:
        await router.route("example.org")
    assert (info.value.code, info.value.temporary) == (code, temporary)


async def test_static_route_beats_smarthost_and_mx() -> None:
    router = Router(
        routes={"Example.org": "127.0.0.2:2526"},
        smarthost="smtp.provider.example:587",
        smarthost_user="u",
        smarthost_password="p",
        lookup=lookup_of(AssertionError("no DNS for routed domains")),
    )
    assert (await router.route("example.org")).hosts == [("127.0.0.2", 2526)]
    other = await router.route("elsewhere.example")
    assert other.smarthost and other.hosts == [("smtp.provider.example", 587)]
    assert (other.username, other.tls) == ("u", "starttls")


@given(st.sampled_from(["mx.example", "127.0.0.2", "::1"]), st.integers(1, 65535))
def test_parse_hostport_round_trip(host: str, port: int) -> None:
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_hostport(text, 25) == (host, port)
    assert parse_hostport(host if ":" not in host else f"[{host}]", 25) == (host, 25)
