"""Where mail for one domain goes: a static route, the smarthost, or the domain's MX hosts
(RFC 5321 §5.1: MX records by preference, the domain's own A/AAAA when it has none;
RFC 7505: a null MX means the domain takes no mail).

A :class:`Route` is the list of hosts to try in order, plus what the session must do there
(AUTH, TLS). :func:`parse_hostport` is the one parser of ``host:port`` settings.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailcore.bus.outcome import DeliveryError

# (preference, host) pairs of a domain; raises dns.resolver.NXDOMAIN, NoAnswer, ...
MxLookup = Callable[[str], Awaitable[list[tuple[int, str]]]]


@dataclass(frozen=True, slots=True)
class Route:
    """Hosts to try in order; ``key`` names the destination for concurrency limits."""

    key: str
    hosts: list[tuple[str, int]]
    smarthost: bool = False
    tls: str = "opportunistic"  # opportunistic | starttls | tls | none
    username: str | None = None
    password: str | None = None
    ca: str | None = None  # CA bundle for the smarthost's certificate


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


async def dns_mx(domain: str) -> list[tuple[int, str]]:
    answer = await dns.asyncresolver.resolve(domain, "MX", lifetime=20)
    return [(int(r.preference), r.exchange.to_text()) for r in answer]


class Router:
    def __init__(
        self,
        *,
        routes: dict[str, str],
        mx_port: int = 25,
        smarthost: str | None = None,
        smarthost_tls: str = "starttls",
        smarthost_user: str | None = None,
        smarthost_password: str | None = None,
        smarthost_ca: str | None = None,
        lookup: MxLookup = dns_mx,
    ) -> None:
        self.routes = {d.lower().rstrip("."): parse_hostport(v, 25) for d, v in routes.items()}
        self.mx_port = mx_port
        self.smarthost = parse_hostport(smarthost, 587) if smarthost else None
        self.smarthost_tls = smarthost_tls
        self.smarthost_user = smarthost_user
        self.smarthost_password = smarthost_password
        self.smarthost_ca = smarthost_ca
        self.lookup = lookup

    async def route(self, domain: str) -> Route:
        """The route for ``domain``; raises :class:`DeliveryError` when there is none."""
        domain = domain.lower().rstrip(".")
        static = self.routes.get(domain)
        if static is not None:
            return Route(key=f"{static[0]}:{static[1]}", hosts=[static])
        if self.smarthost is not None:
            return Route(
                key="smarthost",
                hosts=[self.smarthost],
                smarthost=True,
                tls=self.smarthost_tls,
                username=self.smarthost_user,
                password=self.smarthost_password,
                ca=self.smarthost_ca,
            )
        return Route(key=domain, hosts=await self._mx_hosts(domain))

    async def _mx_hosts(self, domain: str) -> list[tuple[str, int]]:
        try:
            records = await self.lookup(domain)
        except dns.resolver.NXDOMAIN:
            raise DeliveryError(550, f"domain {domain} does not exist", enhanced="5.1.2") from None
        except dns.resolver.NoAnswer:
            # RFC 5321 §5.1: no MX records: the domain itself is the implicit MX (A/AAAA).
            return [(domain, self.mx_port)]
        except (dns.exception.DNSException, OSError) as exc:
            raise DeliveryError(
                451, f"MX lookup for {domain} failed: {type(exc).__name__}", enhanced="4.4.3"
            ) from None
        hosts = [(pref, host.rstrip(".")) for pref, host in records if host not in ("", ".")]
        if not hosts:
            # RFC 7505 §3: a null MX ("0 .") says the domain accepts no mail.
            raise DeliveryError(556, f"domain {domain} accepts no mail", enhanced="5.1.10")
        # RFC 5321 §5.1: lowest preference first; equal preferences in random order.
        random.shuffle(hosts)
        hosts.sort(key=lambda ph: ph[0])
        return [(host, self.mx_port) for _, host in hosts]
